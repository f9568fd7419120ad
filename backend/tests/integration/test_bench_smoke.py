"""`make bench` cannot rot: its harness runs end to end with 1 s scenarios, fewer big uploads and 2 cold variants.

The figures of so short a run mean nothing and are not checked; what is checked is that every
scenario ran and reported, and that the run stopped everything it started. It writes into a
temporary directory, never docs/performance.md or bench/results/.

The bodies wrk sends in the unique-upload scenarios are checked on their own, against a server that
records them: new every time, and otherwise the very image the harness made.
"""

from __future__ import annotations

import calendar
import json
import os
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.servers import processes_mentioning

sys.path.insert(0, str(REPO_ROOT / "bench"))  # the harness's modules import each other by name

import images
import report
import wrk


def _bench_scenarios() -> tuple[str, ...]:
    scenarios: tuple[str, ...] = report.SCENARIOS
    return scenarios


# The variant pass adds about a minute on a busy 2-core machine (a whole smoke run took ~240 s there), the
# scale pass about 40 s (two API processes, a worker tier and nginx start; eight 1 s legs).
SMOKE_TIMEOUT_SECONDS = 480
# The contract of a complete run is the harness's own list (bench/report.py), not a copy of it.
SCENARIOS = set(_bench_scenarios())
WRK_FIGURES = ("req_per_s", "p50_ms", "p99_ms", "errors", "peak_rss_mb")


def test_bench_harness_runs_every_scenario_and_stops_what_it_started(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    results_dir = tmp_path / "results"
    workdirs = tmp_path / "work"
    workdirs.mkdir()

    env = {**os.environ, "TMPDIR": str(workdirs)}  # run.sh makes its work directory in here
    if "TEST_DATABASE_URL" in os.environ:  # the server the rest of the suite uses, if it is not the default
        env["BENCH_ADMIN_DATABASE_URL"] = os.environ["TEST_DATABASE_URL"].replace("+asyncpg", "")
    command = ["bash", "bench/run.sh", "--duration", "1", "--smoke"]
    command += ["--doc", str(doc), "--results-dir", str(results_dir)]
    # Its own process group, so a run that hangs is ended whole (run.sh, the harness, its servers).
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=SMOKE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        pytest.fail(f"the smoke run took over {SMOKE_TIMEOUT_SECONDS} s:\n{stderr[-4000:]}")

    assert process.returncode == 0, stderr[-4000:]
    results = json.loads((results_dir / "smoke-latest.json").read_text())
    assert set(results["scenarios"]) == SCENARIOS
    for name, scenario in results["scenarios"].items():
        if scenario["kind"] == "wrk":
            assert all(figure in scenario for figure in WRK_FIGURES), name
            assert scenario["requests"] > 0, name
    # Unique-upload scenarios stored every upload as new content; the duplicate one stored one.
    for name in ("upload_200k", "upload_200k_nostrip", "upload_webp", "upload_heic"):
        assert results["scenarios"][name]["contents"] == results["scenarios"][name]["images"] > 0, name
    assert results["scenarios"]["upload_200k_duplicate"]["contents"] == 1
    assert results["scenarios"]["memory_5mb_uploads"]["uploads"] == 5
    assert results["scenarios"]["thumbnail_latency"]["samples"] == 5
    # Each timed cold variant was a render of its own; single flight is checked even in a smoke run.
    for name in ("variant_cold_webp", "variant_cold_avif", "variant_webp_floor", "variant_avif_floor"):
        assert results["scenarios"][name]["samples"] == 2, name
    for name in ("variant_single_flight", "variant_single_flight_two_processes"):
        assert results["scenarios"][name]["requests"] == 50, name
        assert results["scenarios"][name]["renders"] == 1, results["scenarios"][name]
    assert len(results["verdicts"]) >= 10
    assert "make bench" in doc.read_text()
    # Every server, nginx and moto is gone, and so is the work directory.
    assert processes_mentioning(str(workdirs)) == []
    assert list(workdirs.iterdir()) == []


class _RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects
    server: _RecordingServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.bodies.append(body)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()


@pytest.fixture
def recording_server() -> Iterator[_RecordingServer]:
    server = _RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_wrk_sends_new_content_every_time_that_is_otherwise_the_harness_image(
    tmp_path: Path, recording_server: _RecordingServer
) -> None:
    subprocess.run(["bash", "bench/install.sh"], cwd=REPO_ROOT, check=True, timeout=600)
    image = images.photo_like_jpeg(64, 48, seed=1, metadata=images.phone_metadata_options)
    script = tmp_path / "unique.lua"
    script.write_text(
        wrk.upload_lua(
            image, "token", body_path=tmp_path / "body", filename="phone.jpg", content_type="image/jpeg", unique=True
        )
    )
    invocation = 5
    url = f"http://127.0.0.1:{recording_server.server_address[1]}/upload"

    subprocess.run(
        ["wrk", "-t2", "-c2", "-d1s", "-s", str(script), url, "--", str(invocation)],
        check=True,
        capture_output=True,
        timeout=60,
    )

    bodies = recording_server.bodies
    assert len(bodies) > 10
    assert len(set(bodies)) == len(bodies)
    _, image_at = wrk.multipart_body(image, filename="phone.jpg", content_type="image/jpeg")
    stamp_at = image_at + images.icc_date_offset(image)
    ranges = [wrk.stamp_range(invocation, thread) for thread in range(2)]
    threads_seen = set()
    for body in bodies:
        year, month, day, hour, minute, second = struct.unpack(">6H", body[stamp_at : stamp_at + 12])
        stamp = calendar.timegm((year, month, day, hour, minute, second))
        # The body is the image with that stamp and nothing else changed.
        expected, _ = wrk.multipart_body(images.stamped(image, stamp), filename="phone.jpg", content_type="image/jpeg")
        assert body == expected
        owners = [thread for thread, stamps in enumerate(ranges) if stamp in stamps]
        assert len(owners) == 1, stamp  # within its thread's range for this invocation
        threads_seen.update(owners)
    assert threads_seen == {0, 1}
