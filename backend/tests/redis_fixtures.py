"""Redis for tests: the shared test database (TEST_REDIS_URL) and throwaway servers to kill.

A run where Redis is unreachable, or `redis-server` is missing, stops with one clear line; it never
skips. Use with `pytest_plugins = ["tests.redis_fixtures"]` (or import the fixtures in conftest).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest
from anyio.abc import Process
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.servers import free_port

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"
REDIS_SERVER_START_TIMEOUT_SECONDS = 5.0


def _shown(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """TEST_REDIS_URL (a dedicated db index), emptied before and after each test."""
    url = os.environ.get("TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        try:
            await client.ping()
        except (RedisError, OSError) as error:
            pytest.exit(f"Redis is unreachable at {_shown(url)} (TEST_REDIS_URL): {error}", returncode=3)
        await client.flushdb()
        yield url
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[Redis]:
    """A separate client on the test's Redis database, to look at (or tamper with) what the app stored."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


class RedisServer:
    """A `redis-server` on a fixed loopback port that a test can kill, pause and start again."""

    def __init__(self, executable: str, port: int, directory: Path) -> None:
        self.executable = executable
        self.port = port
        self.directory = directory
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start (or restart) the server on the same port and wait until it answers PING."""
        command = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no"]
        self.process = await anyio.open_process(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = Redis.from_url(self.url, socket_connect_timeout=0.2, socket_timeout=0.2)
        try:
            with anyio.fail_after(REDIS_SERVER_START_TIMEOUT_SECONDS):
                while True:
                    try:
                        await client.ping()
                        return
                    except (RedisError, OSError):
                        await anyio.sleep(0.02)
        finally:
            await client.aclose()

    async def kill(self) -> None:
        """SIGKILL: the connection drops and the port refuses, as when Redis crashes."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: the port accepts but nothing answers, as with a hung or unreachable server."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def redis_server_executable() -> str:
    executable = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(executable, os.X_OK):
        pytest.fail("redis-server not found: install Debian's redis-server package", pytrace=False)
    return executable


@pytest.fixture
async def throwaway_redis(redis_server_executable: str, tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A running private `redis-server`, killed at the end whatever the test did to it."""
    server = RedisServer(redis_server_executable, free_port(), tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()  # SIGKILL ends a paused server too
