"""Driving a server with wrk: a warm-up, then a measured run whose Lua `done` prints the figures as JSON.

Between the two the server is left to finish what the warm-up left it (requests wrk abandoned,
thumbnails), so the measured window pays only for its own requests. While the measured run goes, the
server's RSS is polled, and with `profile_to` py-spy records its stacks (folded, `--format raw`) for
the same seconds.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import images
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


BOUNDARY = "chitram-bench-boundary-7d3f"
# Each wrk invocation of a run (warm-ups too) gets its own range of ICC dates per thread, passed in as
# the script's argument: a body is never sent twice in one run, whichever scenario or leg sends it.
_invocations = itertools.count()
# Seconds of ICC date per thread and invocation: far more requests than a thread sends in a minute.
STAMPS_PER_THREAD = 1_000_000
MAX_THREADS = 16


def multipart_body(image: bytes, *, filename: str, content_type: str) -> tuple[bytes, int]:
    """One upload's multipart/form-data body, and where the image's first byte is in it."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + image + f"\r\n--{BOUNDARY}--\r\n".encode(), len(head)


def upload_lua(image: bytes, token: str, *, body_path: Path, filename: str, content_type: str, unique: bool) -> str:
    """POST uploads of `image`: the very same body every time, or (`unique`) a new one every time.

    A unique body has the ICC profile's date and time (images.icc_date_offset) rewritten from a
    counter, each thread counting through its own range: content that is new after stripping too
    and decodes exactly like `image`. The body is written to `body_path` for the script to read.
    """
    body, image_at = multipart_body(image, filename=filename, content_type=content_type)
    body_path.write_bytes(body)
    script = f"""
local file = assert(io.open("{body_path}", "rb"))
local body = file:read("*a")
file:close()
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "multipart/form-data; boundary={BOUNDARY}"
"""
    if not unique:
        return script + "wrk.body = body\n" + REPORT_LUA
    stamp_at = image_at + images.icc_date_offset(image)
    # Lua strings count from 1: the stamp replaces bytes stamp_at+1 .. stamp_at+12.
    return (
        script
        + f"""
local head = body:sub(1, {stamp_at})
local tail = body:sub({stamp_at + images.ICC_DATE_SIZE + 1})
local threads = 0

setup = function(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

init = function(args)
  local invocation = assert(tonumber(args[1]), "the invocation number is the script's argument")
  assert(thread_index < {MAX_THREADS})
  next_second = {images.FIRST_STAMP_SECOND} + (invocation * {MAX_THREADS} + thread_index) * {STAMPS_PER_THREAD}
end

local function u16(value)
  return string.char(math.floor(value / 256), value % 256)
end

-- The ICC date and time field as images.icc_stamp writes it: year, month, day, hour, minute, second.
request = function()
  local t = os.date("!*t", next_second)
  next_second = next_second + 1
  local stamp = u16(t.year) .. u16(t.month) .. u16(t.day) .. u16(t.hour) .. u16(t.min) .. u16(t.sec)
  return wrk.format(nil, nil, nil, head .. stamp .. tail)
end
{REPORT_LUA}
"""
    )


def stamp_range(invocation: int, thread_index: int) -> range:
    """The ICC dates (seconds) the Lua of `upload_lua` gives one thread of one invocation."""
    first = images.FIRST_STAMP_SECOND + (invocation * MAX_THREADS + thread_index) * STAMPS_PER_THREAD
    return range(first, first + STAMPS_PER_THREAD)


@dataclass
class WrkRun:
    url: str
    duration: int
    warmup: int
    connections: int = CONNECTIONS
    threads: int = THREADS
    timeout_seconds: int = 10
    lua: str = REPORT_LUA


def run_wrk(
    run: WrkRun, *, workdir: Path, name: str, server_pids: Sequence[int], profile_to: Path | None
) -> dict[str, Any]:
    """Warm up, then measure; returns req/s, p50/p99 (ms), errors and the servers' peak RSS.

    CPU and RSS are those of `server_pids` together (one process, or every process of a layout);
    with `profile_to`, py-spy records each of them into that one folded file.
    """
    script = workdir / f"{name}.lua"
    script.write_text(run.lua)
    base = ["wrk", f"-t{run.threads}", f"-c{run.connections}", f"--timeout={run.timeout_seconds}s", "-s", str(script)]
    if run.threads > MAX_THREADS:
        raise ValueError(f"upload scripts number at most {MAX_THREADS} threads")
    if run.warmup > 0:
        subprocess.run(
            [*base, f"-d{run.warmup}s", run.url, "--", str(next(_invocations))],
            capture_output=True,
            check=True,
            timeout=run.warmup + 30,
        )
    wait_for_quiet(*server_pids)

    profilers = []
    if profile_to is not None:
        profilers = [
            (pid, _record(pid, profile_to.with_suffix(f".{pid}.folded"), run.duration, workdir / f"{name}.py-spy.log"))
            for pid in server_pids
        ]
    cpu_before = CpuReading.now(*server_pids)
    ticks_before = {pid: CpuReading.now(pid).process_ticks for pid in server_pids}
    with RssSampler(*server_pids) as rss:
        completed = subprocess.run(
            [*base, f"-d{run.duration}s", "--latency", run.url, "--", str(next(_invocations))],
            capture_output=True,
            text=True,
            timeout=run.duration + 60,
        )
    ended_at = time.time()
    cpu_after = CpuReading.now(*server_pids)
    tick_s = 1 / os.sysconf("SC_CLK_TCK")
    cpu_by_pid = {
        str(pid): round((CpuReading.now(pid).process_ticks - ticks) * tick_s, 2) for pid, ticks in ticks_before.items()
    }
    if profile_to is not None:
        _join_recordings(profilers, profile_to, run.duration, several=len(server_pids) > 1)
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
        # When the load stopped (Unix time), for what is timed from then on (a backlog's drain).
        "ended_at": round(ended_at, 3),
        "rss_start_mb": rss.start_mb,
        "peak_rss_mb": rss.peak_mb,
        # Diagnostics, not targets: where a rate falls short, they say whether the server was busy.
        **cpu_after.since(cpu_before, int(figures["requests"])),
        **({"server_cpu_s_by_pid": cpu_by_pid} if len(server_pids) > 1 else {}),
    }


def _record(pid: int, folded: Path, seconds: int, log: Path) -> subprocess.Popen[bytes]:
    """py-spy recording process `pid` for `seconds` into `folded` (raw, folded stacks)."""
    with log.open("ab") as log_file:
        return subprocess.Popen(
            [
                str(VENV_BIN / "py-spy"),
                "record",
                "--format",
                "raw",
                "--output",
                str(folded),
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                "--rate",
                "100",
                # Not pausing the server for each sample keeps its throughput close to an
                # unprofiled run's; a sample may now and then mix two moments of a stack.
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )


def _join_recordings(
    profilers: list[tuple[int, subprocess.Popen[bytes]]], profile_to: Path, seconds: int, *, several: bool
) -> None:
    """Wait for the recordings and write them as one folded file; with `several` processes, each
    stack starts with a frame naming its process, so the flame graph shows which did what."""
    lines = []
    for pid, profiler in profilers:
        profiler.wait(timeout=seconds + 30)
        folded = profile_to.with_suffix(f".{pid}.folded")
        if not folded.exists():
            continue
        text = folded.read_text(errors="replace")
        folded.unlink()
        if several:
            root = f"process {pid} ({_command_line(pid)})"
            lines += [f"{root};{line}" for line in text.splitlines() if line]
        else:
            lines += text.splitlines()
    if lines:
        profile_to.write_text("\n".join(lines) + "\n")


def _command_line(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    # The module or app a Python process runs says more than the interpreter's path.
    named = [word.decode(errors="replace") for word in words if word and not word.startswith(b"/")]
    return " ".join(named[:4]).replace(";", ",").replace("(", "").replace(")", "")


def combine_legs(legs: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's figures from several measured runs (legs) of it, each leg's own kept under `legs`.

    Totals add up (requests, seconds, errors, CPU); req/s and CPU per request are over all legs; the
    idle share is weighted by time, p50 by requests; p99 and the peaks are the largest of any leg.
    """
    first = legs[0]
    requests = sum(leg["requests"] for leg in legs)
    seconds = sum(leg["duration_s"] for leg in legs)
    cpu_s = sum(leg["server_cpu_s"] for leg in legs)
    return {
        **first,
        "duration_s": round(seconds, 2),
        "requests": requests,
        "req_per_s": round(requests / seconds, 1),
        "p50_ms": round(sum(leg["p50_ms"] * leg["requests"] for leg in legs) / requests, 2) if requests else 0.0,
        "p99_ms": max(leg["p99_ms"] for leg in legs),
        "max_ms": max(leg["max_ms"] for leg in legs),
        "ended_at": legs[-1]["ended_at"],
        "mb_per_s": round(sum(leg["mb_per_s"] * leg["duration_s"] for leg in legs) / seconds, 1),
        "errors": sum(leg["errors"] for leg in legs),
        "error_breakdown": {key: sum(leg["error_breakdown"][key] for leg in legs) for key in first["error_breakdown"]},
        "peak_rss_mb": max(leg["peak_rss_mb"] for leg in legs),
        "server_cpu_s": round(cpu_s, 2),
        "server_cpu_ms_per_request": round(cpu_s * 1000 / requests, 2) if requests else None,
        "machine_idle_percent": round(
            sum((leg["machine_idle_percent"] or 0) * leg["duration_s"] for leg in legs) / seconds, 1
        ),
        "legs": [
            {key: leg[key] for key in ("duration_s", "requests", "req_per_s", "p99_ms", "server_cpu_ms_per_request")}
            for leg in legs
        ],
    }


def wait_for_quiet(*pids: int, window: float = 0.5, limit: float = 60.0) -> float:
    """Wait until processes `pids` used at most one clock tick of CPU each in `window` seconds; the seconds waited.

    Gives up quietly after `limit` seconds: a server that never rests is measured as it is.
    """
    started = time.monotonic()
    previous = CpuReading.now(*pids).process_ticks
    while time.monotonic() - started < limit:
        time.sleep(window)
        current = CpuReading.now(*pids).process_ticks
        if current - previous <= len(pids):
            break
        previous = current
    return round(time.monotonic() - started, 2)


def parse_report(stdout: str) -> dict[str, float]:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            figures: dict[str, float] = json.loads(line[len(MARKER) :])
            return figures
    raise RuntimeError(f"wrk printed no report line:\n{stdout}")


def have_wrk() -> bool:
    return shutil.which("wrk") is not None
