"""Issue 18 in short: several instances on shared engines lose nothing when parts of them die.

bench/scale_out_scenario.py, for 20 s of load: nginx in front of two `python -m app` processes, two worker
tiers (`python -m app.worker`), on this run's PostgreSQL database, Redis (TEST_REDIS_URL) and moto's S3.
Uploads, reads and deletes go through nginx while one API process and one worker tier are SIGKILLed and
started again. The scenario checks what clients see (every 201 stored with its bytes and thumbnail, no
deleted image served, the rate limit shared, no 5xx but 502/503 around the API process's kill); this
test asserts that its checks held and that the kills were real: the killed processes are gone, and the
new ones did work (requests sent by the balancer, thumbnails).

nginx is one of the Debian packages the suite needs (scripts/install-system-deps.sh): without it the test
fails with one line; it never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, _truncate_tables
from tests.servers import processes_mentioning

SCENARIO = REPO_ROOT / "bench" / "scale_out_scenario.py"
LOAD_SECONDS = 20
# Four app processes start twice over (an import of the app takes seconds of CPU on a busy 2-core
# machine), then the load, the thumbnails' wait and the checks' requests.
TIMEOUT_SECONDS = 300
RUN_MARKER = "CHITRAM_SCALE_OUT_RUN"  # every process the scenario starts inherits it


def nginx_or_fail() -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        pytest.fail("nginx not found (PATH or /usr/sbin): run scripts/install-system-deps.sh", pytrace=False)


def run_scenario(command: list[str], workdir: Path) -> tuple[int, str]:
    """The scenario's exit status and standard error; a run past its time is stopped, with what it started."""
    env = {**os.environ, RUN_MARKER: str(workdir)}
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)  # the scenario stops its servers on SIGTERM
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            _, stderr = process.communicate()
            # Its servers are process groups of their own, written down as they started.
            for pgid in (workdir / "pgids").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(pgid), signal.SIGKILL)
        pytest.fail(f"the scenario took over {TIMEOUT_SECONDS} s:\n{stderr[-4000:]}")
    return process.returncode, stderr


def test_two_api_processes_and_two_worker_tiers_lose_nothing_when_one_of_each_is_killed(
    postgres_url: str, s3_endpoint: str, redis_url: str, tmp_path: Path
) -> None:
    nginx_or_fail()
    workdir, report_path = tmp_path / "work", tmp_path / "report.json"
    command = [sys.executable, str(SCENARIO), "--duration", str(LOAD_SECONDS), "--report", str(report_path)]
    command += ["--database-url", postgres_url, "--redis-url", redis_url, "--s3-endpoint", s3_endpoint]
    command += ["--workdir", str(workdir)]

    try:
        returncode, stderr = run_scenario(command, workdir)
    finally:
        # The run's database is shared with the tests after this one: leave none of the scenario's rows or jobs.
        asyncio.run(_truncate_tables(postgres_url))

    assert report_path.exists(), stderr[-4000:]
    report = json.loads(report_path.read_text())
    failed = [f"{check['name']}: {check['detail']}" for check in report["checks"] if not check["ok"]]
    assert not failed, "\n".join(failed) + "\n" + stderr[-3000:]
    assert returncode == 0, stderr[-4000:]
    # Load of every kind went through the balancer, and some of it was deleted.
    assert report["uploads"]["answered_201"] > 0
    assert report["uploads"]["deleted"] > 0
    assert report["requests"]["file"].get("200", 0) > 0
    # The kills were real: SIGKILL, every process of the group gone, a new process in its place that worked.
    kills = {kill["kind"]: kill for kill in report["kills"]}
    assert set(kills) == {"api", "worker"}
    for kill in kills.values():
        assert kill["exit_status"] == -signal.SIGKILL, kill
        assert kill["all_gone"], kill
        assert kill["restarted_pid"] not in kill["pids"], kill
    assert kills["worker"]["pids"][1:], "the worker tier's kill ended its job process too"
    assert kills["api"]["balanced_to_restarted"] > 0, kills["api"]
    assert kills["api"]["requests_served_by_restarted"] > 0, kills["api"]
    assert kills["worker"]["thumbnails_made_by_restarted"] > 0, kills["worker"]
    # Everything the scenario started has stopped.
    assert processes_mentioning(str(workdir)) == []
