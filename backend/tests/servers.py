"""Real servers for tests: free loopback ports and the app under uvicorn, as `make run` starts it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from app.config import Settings

BACKEND_DIR = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose environment contains `text` (a work directory every child of a run inherits)."""
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


def app_server_env(**overrides: str) -> dict[str, str]:
    """This process's environment minus every setting a developer's shell might carry, plus `overrides`."""
    setting_names = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in setting_names}
    env.update(overrides)
    return env


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that give a server process the settings set explicitly on `settings`."""
    env: dict[str, str] = {}
    for name in sorted(settings.model_fields_set):
        value = getattr(settings, name)
        if value is None:
            continue  # None is the default of every optional setting, and no variable spells it
        if isinstance(value, bool):
            env[name.upper()] = "true" if value else "false"
        elif isinstance(value, tuple):
            env[name.upper()] = ",".join(value)
        else:
            env[name.upper()] = str(value)
    return env


@contextmanager
def running_app_server(env: dict[str, str], log_path: Path, *, start_timeout: float = 30) -> Iterator[str]:
    """`python -m app` with `env` (which names HOST and PORT), ready on /health; yields its base URL."""
    base_url = f"http://{env['HOST']}:{env['PORT']}"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "app"], cwd=BACKEND_DIR, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the app server did not start:\n{log_path.read_text()}")
                time.sleep(0.1)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def app_servers(
    settings: Settings, tmp_path: Path, count: int, *, start_timeout: float = 30
) -> Iterator[list[tuple[str, Path]]]:
    """`count` `python -m app` servers on `settings`, started side by side (an import of the app alone
    takes seconds of CPU); each one's base URL and the file its stdout and stderr go to."""
    logs = [tmp_path / f"api-{number}.log" for number in range(count)]
    servers = [
        running_app_server(
            app_server_env(HOST="127.0.0.1", PORT=str(free_port()), **settings_env(settings)),
            log,
            start_timeout=start_timeout,
        )
        for log in logs
    ]
    # On a failed start the pool is left first (every other start has ended), then what did start stops.
    with ExitStack() as starting, ThreadPoolExecutor(count) as pool:
        urls = list(pool.map(starting.enter_context, servers))
        running = starting.pop_all()
    with running:
        yield list(zip(urls, logs, strict=True))


@contextmanager
def worker_tier(
    settings: Settings, log_path: Path, *, processes: int = 1, metrics_port: int = 0
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m app.worker` with `processes` worker processes, in a session of its own (so a signal can
    reach the whole tier); killed at the end if it still runs. Its output is appended to `log_path`.
    Its metrics server runs only when given a port (its own process: the supervisor's children are
    otherwise its workers alone)."""
    env = app_server_env(
        **settings_env(settings), WORKER_PROCESSES=str(processes), WORKER_METRICS_PORT=str(metrics_port)
    )
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.worker"],
            cwd=BACKEND_DIR,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
