"""Driving a server with wrk: a warm-up, then a measured run whose Lua `done` prints the figures as JSON.

While the measured run goes, the server's RSS is polled, and with `profile_to` py-spy records its
stacks (folded, `--format raw`) for the same seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services import VENV_BIN, CpuReading, RssSampler

THREADS = 2
CONNECTIONS = 32
MARKER = "BENCH_JSON "

# wrk calls `done` once, after every thread has finished; latencies are in microseconds.
# %.0f, not %d: wrk's LuaJIT hands percentiles over as floats.
REPORT_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,'
    .. '"connect_errors":%.0f,"read_errors":%.0f,"write_errors":%.0f,"status_errors":%.0f,"timeouts":%.0f,'
    .. '"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"max_us":%.0f,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def upload_lua(jpeg_path: Path, token: str) -> str:
    """A POST of one multipart body, built once from the file and reused for every request."""
    boundary = "chitram-bench-boundary-7d3f"
    return f"""
local file = assert(io.open("{jpeg_path}", "rb"))
local jpeg = file:read("*a")
file:close()
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"
wrk.body = "--{boundary}\\r\\n"
  .. 'Content-Disposition: form-data; name="file"; filename="bench.jpg"\\r\\n'
  .. "Content-Type: image/jpeg\\r\\n\\r\\n"
  .. jpeg
  .. "\\r\\n--{boundary}--\\r\\n"
{REPORT_LUA}
"""


@dataclass
class WrkRun:
    url: str
    duration: int
    warmup: int
    connections: int = CONNECTIONS
    threads: int = THREADS
    timeout_seconds: int = 10
    lua: str = REPORT_LUA


def run_wrk(run: WrkRun, *, workdir: Path, name: str, server_pid: int, profile_to: Path | None) -> dict[str, Any]:
    """Warm up, then measure; returns req/s, p50/p99 (ms), errors and the server's peak RSS."""
    script = workdir / f"{name}.lua"
    script.write_text(run.lua)
    base = ["wrk", f"-t{run.threads}", f"-c{run.connections}", f"--timeout={run.timeout_seconds}s", "-s", str(script)]
    if run.warmup > 0:
        subprocess.run([*base, f"-d{run.warmup}s", run.url], capture_output=True, check=True, timeout=run.warmup + 30)

    profiler = None
    if profile_to is not None:
        profiler = subprocess.Popen(
            [
                str(VENV_BIN / "py-spy"),
                "record",
                "--format",
                "raw",
                "--output",
                str(profile_to),
                "--pid",
                str(server_pid),
                "--duration",
                str(run.duration),
                "--rate",
                "100",
                # Not pausing the server for each sample keeps its throughput close to an
                # unprofiled run's; a sample may now and then mix two moments of a stack.
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(workdir / f"{name}.py-spy.log").open("wb"),
        )
    cpu_before = CpuReading.now(server_pid)
    with RssSampler(server_pid) as rss:
        completed = subprocess.run(
            [*base, f"-d{run.duration}s", "--latency", run.url],
            capture_output=True,
            text=True,
            timeout=run.duration + 60,
        )
    cpu_after = CpuReading.now(server_pid)
    if profiler is not None:
        profiler.wait(timeout=run.duration + 30)
    (workdir / f"{name}.wrk.txt").write_text(completed.stdout + completed.stderr)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed for {name}: {completed.stderr.strip()}")
    figures = parse_report(completed.stdout)
    seconds = figures["duration_us"] / 1e6
    errors = sum(figures[key] for key in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return {
        "kind": "wrk",
        "url_path": "/" + run.url.split("/", 3)[3],
        "threads": run.threads,
        "connections": run.connections,
        "duration_s": round(seconds, 2),
        "warmup_s": run.warmup,
        "requests": int(figures["requests"]),
        "req_per_s": round(figures["requests"] / seconds, 1),
        "p50_ms": round(figures["p50_us"] / 1000, 2),
        "p99_ms": round(figures["p99_us"] / 1000, 2),
        "max_ms": round(figures["max_us"] / 1000, 2),
        "mb_per_s": round(figures["bytes"] / seconds / 1e6, 1),
        "errors": int(errors),
        "error_breakdown": {
            key: int(figures[key])
            for key in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
        },
        "rss_start_mb": rss.start_mb,
        "peak_rss_mb": rss.peak_mb,
        # Diagnostics, not targets: where a rate falls short, they say whether the server was busy.
        **cpu_after.since(cpu_before, int(figures["requests"])),
    }


def parse_report(stdout: str) -> dict[str, float]:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            figures: dict[str, float] = json.loads(line[len(MARKER) :])
            return figures
    raise RuntimeError(f"wrk printed no report line:\n{stdout}")


def have_wrk() -> bool:
    return shutil.which("wrk") is not None
