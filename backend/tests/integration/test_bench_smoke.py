"""`make bench` cannot rot: its harness runs end to end with 1 s scenarios and fewer big uploads.

The figures of so short a run mean nothing and are not checked; what is checked is that every
scenario ran and reported, and that the run stopped everything it started. It writes into a
temporary directory, never docs/performance.md or bench/results/.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def _bench_scenarios() -> tuple[str, ...]:
    import importlib
    import sys

    sys.path.insert(0, str(REPO_ROOT / "bench"))  # the harness's modules import each other by name
    scenarios: tuple[str, ...] = importlib.import_module("report").SCENARIOS
    return scenarios


SMOKE_TIMEOUT_SECONDS = 300
# The contract of a complete run is the harness's own list (bench/report.py), not a copy of it.
SCENARIOS = set(_bench_scenarios())
WRK_FIGURES = ("req_per_s", "p50_ms", "p99_ms", "errors", "peak_rss_mb")


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose environment contains `text` (every child of the run inherits BENCH_WORKDIR)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if text.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


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
    assert results["scenarios"]["memory_5mb_uploads"]["uploads"] == 5
    assert results["scenarios"]["thumbnail_latency"]["samples"] == 5
    assert len(results["verdicts"]) >= 10
    assert "make bench" in doc.read_text()
    # Every server, nginx and moto is gone, and so is the work directory.
    assert processes_mentioning(str(workdirs)) == []
    assert list(workdirs.iterdir()) == []
