"""The processes a benchmark run starts (uvicorn apps, nginx, moto), each in its own process group.

Every process listens on 127.0.0.1 only, logs into the run's work directory, and is written to
`<workdir>/pgids` as soon as it starts, so `bench/run.sh` can kill what a crashed harness left behind.
`Processes.stop_all()` ends them in reverse order: SIGTERM to the group, SIGKILL after a few seconds.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
BACKEND_DIR = REPO_ROOT / "backend"
VENV_BIN = BACKEND_DIR / ".venv" / "bin"
START_TIMEOUT_SECONDS = 30.0
STOP_GRACE_SECONDS = 5.0


def clean_env() -> dict[str, str]:
    """This process's environment without any of Chitram's settings a developer's shell may carry.

    OpenTelemetry's OTEL_* variables and PROMETHEUS_MULTIPROC_DIR are settings too: one would turn
    tracing on, the other put every server's metrics in one folder.
    """
    from app.config import Settings  # the backend is on sys.path once a harness has started

    names = {name.upper() for name in Settings.model_fields} | {"PROMETHEUS_MULTIPROC_DIR"}
    return {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in names and not key.upper().startswith("OTEL_")
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Poll `ready` until it is true; fail with the process's log if it dies or the time runs out."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        with contextlib.suppress(httpx.TransportError, OSError):
            if ready():
                return
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {START_TIMEOUT_SECONDS:g} s")
        time.sleep(0.05)


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=1).status_code < 500


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class Processes:
    """Starts and stops the run's servers; the one place that spawns long-lived children."""

    workdir: Path
    started: list[Service] = field(default_factory=list)

    def spawn(
        self, name: str, command: Sequence[str], *, env: Mapping[str, str], cwd: Path, port: int | None
    ) -> Service:
        """Start `command` in a process group of its own; `port` is where it listens (None: nowhere)."""
        log = self.workdir / f"{name}.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=dict(env),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: one killpg ends it and its children
            )
        with (self.workdir / "pgids").open("a") as pgids:
            pgids.write(f"{process.pid}\n")
        service = Service(name, process, "" if port is None else f"http://127.0.0.1:{port}", log)
        self.started.append(service)
        return service

    def uvicorn(
        self,
        name: str,
        app: str,
        *,
        env: Mapping[str, str],
        app_dir: Path,
        ready_path: str,
        log_config: Path | None = None,
        workers: int = 1,
    ) -> Service:
        """uvicorn with `workers` processes (default one), no reload, the command line of backend/Dockerfile.

        `log_config` (uvicorn's --log-config, JSON) replaces uvicorn's logging set-up, which shows
        none of the app's own INFO lines. With more than one worker the service's pid is uvicorn's
        supervising process; `process_tree` lists the workers too.
        """
        port = free_port()
        command = [
            str(VENV_BIN / "python"),
            "-m",
            "uvicorn",
            "--factory",
            app,
            "--app-dir",
            str(app_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            # As backend/Dockerfile: the app resolves X-Forwarded-For itself; Caddy writes access logs.
            "--no-proxy-headers",
            "--no-access-log",
            "--no-server-header",
        ]
        if log_config is not None:
            command += ["--log-config", str(log_config)]
        service = self.spawn(name, command, env=env, cwd=app_dir, port=port)
        wait_until(http_ok(service.base_url + ready_path), service.process, name, service.log)
        if workers > 1:
            # /health answers as soon as one worker does: wait for all of them to be up.
            wait_until(
                lambda: service.log.read_text(errors="replace").count("Application startup complete") >= workers,
                service.process,
                name,
                service.log,
            )
        return service

    def job_workers(self, name: str, *, env: Mapping[str, str], processes: int) -> Service:
        """The worker tier, `python -m app.worker` with WORKER_PROCESSES=`processes`, once every worker is up."""
        command = [str(VENV_BIN / "python"), "-m", "app.worker"]
        service = self.spawn(name, command, env={**env, "WORKER_PROCESSES": str(processes)}, cwd=BACKEND_DIR, port=None)
        wait_until(
            # app.jobs.worker logs this line once per process, when its QueueManager is about to run.
            lambda: service.log.read_text(errors="replace").count("worker started:") >= processes,
            service.process,
            name,
            service.log,
        )
        return service

    def nginx(self, name: str, root: Path, *, accel_upstream: int | None = None) -> Service:
        """nginx, one worker, `sendfile on`, serving `root` on loopback; config, pid and logs in the workdir.

        With `accel_upstream` (a port) it is instead the production layout of FILE_DELIVERY=accel-redirect:
        every request goes to the app there, and nginx sends the file the app names in X-Accel-Redirect.
        """
        executable = _find_executable("nginx", "/usr/sbin/nginx")
        prefix = self.workdir / name
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        port = free_port()
        # Run as root, nginx would drop its worker to `nobody`, which cannot read the private workdir.
        user_line = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
        locations = f"root {root};"
        if accel_upstream is not None:
            locations = f"""
        location / {{ proxy_pass http://127.0.0.1:{accel_upstream}; proxy_http_version 1.1;
                      proxy_set_header Connection ""; }}
        location /_chitram_files/ {{ internal; alias {root}/; }}"""
        temp_paths = "\n".join(
            f"    {kind}_temp_path {prefix / 'tmp' / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        config = f"""
{user_line}
worker_processes 1;
daemon off;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    types {{ image/jpeg jpg; }}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
{temp_paths}
    server {{
        listen 127.0.0.1:{port};
        {locations}
    }}
}}
"""
        conf = prefix / "nginx.conf"
        conf.write_text(config)
        command = [executable, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
        service = self.spawn(name, command, env=os.environ, cwd=prefix, port=port)
        ready = "/health" if accel_upstream is not None else "/"
        wait_until(http_ok(service.base_url + ready), service.process, name, service.log)
        return service

    def moto(self, name: str) -> Service:
        """moto's S3 server (Flask, threaded) on loopback; it checks no credentials."""
        port = free_port()
        command = [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
        service = self.spawn(name, command, env=os.environ, cwd=self.workdir, port=port)
        wait_until(http_ok(service.base_url + "/"), service.process, name, service.log)
        return service

    def stop(self, service: Service) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGTERM)
        try:
            service.process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.pid, signal.SIGKILL)
            service.process.wait(timeout=STOP_GRACE_SECONDS)
        # Children of the group (nginx's worker) may outlive the leader by a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGKILL)
        if service in self.started:
            self.started.remove(service)

    def stop_all(self) -> None:
        for service in reversed(list(self.started)):
            try:
                self.stop(service)
            except Exception as error:  # keep stopping the others
                print(f"bench: could not stop {service.name}: {error}", file=sys.stderr)


def _find_executable(name: str, fallback: str) -> str:
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return fallback


def process_tree(pid: int) -> list[int]:
    """`pid` and every live process below it (uvicorn's workers, the worker tier's processes)."""
    tree, unvisited = [], [pid]
    while unvisited:
        current = unvisited.pop()
        tree.append(current)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    unvisited += [int(child) for child in (task / "children").read_text().split()]
    return tree


def read_status_kib(pid: int, field_name: str) -> int | None:
    """A `/proc/<pid>/status` memory field (VmRSS, VmHWM) in KiB, or None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass(frozen=True)
class CpuReading:
    """Processes' CPU time and the whole machine's busy and idle time, in clock ticks, at one instant."""

    process_ticks: int
    machine_ticks: int
    idle_ticks: int

    @classmethod
    def now(cls, *pids: int) -> CpuReading:
        """The CPU time of `pids` together (each a process, every thread of it included)."""
        ticks = 0
        for pid in pids:
            # /proc/<pid>/stat: utime and stime are fields 14 and 15; the name before them may hold spaces.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        # /proc/stat's first line: user nice system idle iowait irq softirq steal guest guest_nice; the
        # guest times are already inside user and nice, so only the first eight add up to the total.
        machine = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return cls(ticks, sum(machine), machine[3] + machine[4])

    def since(self, earlier: CpuReading, requests: int) -> dict[str, float | None]:
        """The processes' CPU (s), their CPU per request (ms) and the machine's idle share (%) between two readings."""
        tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
        machine = self.machine_ticks - earlier.machine_ticks
        return {
            "server_cpu_s": round((self.process_ticks - earlier.process_ticks) * tick_ms / 1000, 2),
            "server_cpu_ms_per_request": (
                round((self.process_ticks - earlier.process_ticks) * tick_ms / requests, 2) if requests else None
            ),
            "machine_idle_percent": round(100 * (self.idle_ticks - earlier.idle_ticks) / machine, 1)
            if machine
            else None,
        }


class RssSampler:
    """Polls processes' VmRSS in a thread; `peak_mb` is the largest value (their sum) seen while it ran.

    VmHWM would be exact, but it holds the process's peak since it started, not the scenario's;
    polling every 10 ms misses at most a spike shorter than that. Several processes are summed at
    each poll, so their peak is that of the whole, not the sum of peaks reached at different times.
    """

    def __init__(self, *pids: int, interval: float = 0.01) -> None:
        self.pids = pids
        self.interval = interval
        self.start_kib = self._total() or 0
        self.peak_kib = self.start_kib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _total(self) -> int | None:
        """The processes' VmRSS together, or None once one of them is gone."""
        total = 0
        for pid in self.pids:
            rss = read_status_kib(pid, "VmRSS")
            if rss is None:
                return None
            total += rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._total()
            if rss is None:
                return
            self.peak_kib = max(self.peak_kib, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return round(self.peak_kib / 1024, 1)

    @property
    def start_mb(self) -> float:
        return round(self.start_kib / 1024, 1)
