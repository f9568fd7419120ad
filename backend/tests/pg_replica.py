"""A real PostgreSQL primary and streaming replica for tests, started from Debian's server binaries.

Both run on free loopback ports in a temporary directory (trust authentication, unix sockets there
too): the primary with `wal_level=replica`, the replica made by `pg_basebackup -R` and run as a hot
standby. The app's database is created and migrated on the primary before the copy is taken. When
the tests run as root, the servers run as the `postgres` OS user (PostgreSQL refuses root). A run
without the binaries stops with one clear line; it never skips. Loaded with `pytest_plugins`.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest

from tests.servers import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_USER = "postgres"
DATABASE = "chitram"
START_TIMEOUT_SECONDS = 30.0
POLL_INTERVAL_SECONDS = 0.05
SERVER_SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockets}'
wal_level = replica
hot_standby = on
max_connections = 200
shared_buffers = 32MB
wal_keep_size = 256MB
fsync = off
full_page_writes = off
"""


class ReplicatedPostgres:
    """A primary and its streaming replica; the replica can be paused (replay), stopped and started."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.primary_port = free_port()
        self.replica_port = free_port()
        self.primary_data = directory / "primary"
        self.replica_data = directory / "replica"

    def url(self, port: int, *, database: str = DATABASE, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://postgres@127.0.0.1:{port}/{database}"

    @property
    def primary_url(self) -> str:
        """The app's database on the primary (DATABASE_URL)."""
        return self.url(self.primary_port)

    @property
    def replica_url(self) -> str:
        """The same database on the replica (DATABASE_REPLICA_URL)."""
        return self.url(self.replica_port)

    def start(self) -> None:
        """initdb, start the primary, create and migrate the app's database, copy it, start the replica."""
        from tests.conftest import migrate  # late: conftest loads this module as a plugin

        self._run("initdb", "-D", self.primary_data, "-U", "postgres", "-A", "trust", "--no-sync")
        self._configure(self.primary_data, self.primary_port)
        self._pg_ctl(self.primary_data, "start")
        asyncio.run(self._execute(self.primary_port, f'CREATE DATABASE "{DATABASE}"', database="postgres"))
        migrate(self.primary_url)
        self._run(
            "pg_basebackup",
            *("-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres"),
            *("-D", self.replica_data, "-R", "-X", "stream", "-c", "fast", "--no-sync"),
        )
        self._configure(self.replica_data, self.replica_port)
        self._pg_ctl(self.replica_data, "start")
        asyncio.run(self.wait_streaming())

    def stop(self) -> None:
        for data in (self.replica_data, self.primary_data):
            if (data / "postmaster.pid").exists():
                self._pg_ctl(data, "stop", "-m", "immediate", check=False)

    async def start_replica(self) -> None:
        """Start the replica again and wait until it streams from the primary."""
        await anyio.to_thread.run_sync(self._pg_ctl, self.replica_data, "start")
        await self.wait_streaming()

    async def stop_replica(self) -> None:
        """Stop the replica at once (`-m immediate`: its connections drop and its port refuses)."""
        await anyio.to_thread.run_sync(self._pg_ctl, self.replica_data, "stop", "-m", "immediate")

    @property
    def replica_running(self) -> bool:
        return (self.replica_data / "postmaster.pid").exists()

    async def wait_streaming(self) -> None:
        """Until the primary has a walsender streaming to the replica."""
        await self._poll(
            self.primary_port,
            "SELECT count(*) > 0 FROM pg_stat_replication WHERE state = 'streaming'",
            what="the replica to stream from the primary",
        )

    async def pause_replay(self) -> None:
        """The replica keeps receiving WAL but applies none of it: from now on it lags."""
        await self._execute(self.replica_port, "SELECT pg_wal_replay_pause()")
        await self._poll(self.replica_port, "SELECT pg_get_wal_replay_pause_state() = 'paused'", what="replay to pause")

    async def resume_replay(self) -> None:
        await self._execute(self.replica_port, "SELECT pg_wal_replay_resume()")

    async def wait_caught_up(self) -> None:
        """Until the replica has replayed everything the primary had written when this was called."""
        primary = await asyncpg.connect(self.url(self.primary_port, driver="postgresql"))
        try:
            position = await primary.fetchval("SELECT pg_current_wal_lsn()")
        finally:
            await primary.close()
        await self._poll(
            self.replica_port,
            f"SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn >= {int(position)}",
            what=f"the replica to replay up to {position}",
        )

    async def on_replica(self, query: str, *args: object) -> object:
        """One value read on the replica's copy of the app's database."""
        connection = await asyncpg.connect(self.url(self.replica_port, driver="postgresql"))
        try:
            return await connection.fetchval(query, *args)
        finally:
            await connection.close()

    async def replica_sessions_reading_images(self) -> int:
        """Sessions on the replica whose latest statement read `images` (pg_stat_activity, which is live)."""
        count = await self.on_replica(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE '%FROM images%'"
        )
        assert isinstance(count, int)
        return count

    async def _execute(self, port: int, statement: str, *, database: str = DATABASE) -> None:
        connection = await asyncpg.connect(self.url(port, database=database, driver="postgresql"))
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    async def _poll(self, port: int, query: str, *, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                connection = await asyncpg.connect(self.url(port, driver="postgresql"), timeout=2)
                try:
                    if await connection.fetchval(query):
                        return
                finally:
                    await connection.close()
            except (OSError, asyncpg.CannotConnectNowError, asyncpg.InterfaceError):
                pass  # starting up, or in recovery before it accepts connections
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await asyncio.sleep(POLL_INTERVAL_SECONDS)

    def _configure(self, data: Path, port: int) -> None:
        settings = SERVER_SETTINGS.format(port=port, sockets=self.directory)
        with (data / "postgresql.conf").open("a") as config:
            config.write(settings)  # later lines win: a replica's copied port is replaced

    def _pg_ctl(self, data: Path, action: str, *options: str, check: bool = True) -> None:
        log = self.directory / f"{data.name}.log"
        timeout = str(int(START_TIMEOUT_SECONDS))
        self._run("pg_ctl", "-D", data, "-l", log, "-w", "-t", timeout, action, *options, check=check)

    def _run(self, program: str, *arguments: str | Path, check: bool = True) -> None:
        command = [str(PG_BIN / program), *map(str, arguments)]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.directory, check=False)
        if check and result.returncode != 0:
            logs = "".join(f"\n--- {log.name}\n{log.read_text()[-3000:]}" for log in self.directory.glob("*.log"))
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stdout}{result.stderr}{logs}")


def _check_binaries() -> None:
    missing = [name for name in ("initdb", "pg_ctl", "pg_basebackup", "postgres") if not (PG_BIN / name).is_file()]
    if missing:
        pytest.exit(
            f"PostgreSQL server binaries {', '.join(missing)} not found in {PG_BIN} (PG_BIN): "
            "install Debian's postgresql-15 package",
            returncode=3,
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            pytest.exit(f"running as root, but there is no {SERVER_USER!r} user to run PostgreSQL as", returncode=3)


@pytest.fixture(scope="session")
def replicated_postgres() -> Iterator[ReplicatedPostgres]:
    """A running primary with the app's migrated database and a streaming replica, for the whole run."""
    _check_binaries()
    directory = Path(tempfile.mkdtemp(prefix="chitram-pg-"))  # short: unix socket paths are limited
    if os.geteuid() == 0:
        shutil.chown(directory, SERVER_USER, SERVER_USER)
    servers = ReplicatedPostgres(directory)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()
        shutil.rmtree(directory, ignore_errors=True)
