"""The run's throwaway PostgreSQL database and Redis, and what the harness asks the database directly.

PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and Redis on 127.0.0.1:6379 (db 14, flushed) unless
BENCH_ADMIN_DATABASE_URL and BENCH_REDIS_URL point elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import asyncpg
import redis

from services import BACKEND_DIR, VENV_BIN

ADMIN_DATABASE_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")

T = TypeVar("T")


@dataclass(frozen=True)
class QueuedJob:
    """One job as pgqueuer's log tells it: when it was queued, and when a worker took it (None: not yet)."""

    job_id: int
    queued_at: datetime
    picked_at: datetime | None

    @property
    def wait_ms(self) -> float | None:
        """Enqueue to start: how long the job waited for a worker."""
        return None if self.picked_at is None else (self.picked_at - self.queued_at).total_seconds() * 1000


class BenchDatabase:
    """A throwaway PostgreSQL database, migrated by Alembic like the tests', dropped at the end."""

    def __init__(self) -> None:
        self.name = f"chitram_bench_{uuid.uuid4().hex[:12]}"
        base, _, _ = ADMIN_DATABASE_URL.rpartition("/")
        self.url = f"{base}/{self.name}".replace("postgresql://", "postgresql+asyncpg://", 1)
        self.created = False

    def create_and_migrate(self, env: dict[str, str]) -> None:
        asyncio.run(_admin(f'CREATE DATABASE "{self.name}"'))
        self.created = True
        subprocess.run(
            [str(VENV_BIN / "python"), "-m", "alembic", "upgrade", "head"],
            cwd=BACKEND_DIR,
            env={**env, "DATABASE_URL": self.url},
            check=True,
            capture_output=True,
            timeout=120,
        )
        if not self._query(lambda connection: connection.fetchval("SELECT to_regclass('images') IS NOT NULL")):
            raise RuntimeError(
                f"`alembic upgrade head` exited 0 but {self.name} has no `images` table: the migration "
                "was rolled back (see backend/alembic/env.py)"
            )

    @property
    def dsn(self) -> str:
        """The URL as asyncpg takes it (the app's carries SQLAlchemy's driver name)."""
        return self.url.replace("+asyncpg", "", 1)

    def pending_thumbnails(self) -> int:
        count: int = self._query(
            lambda connection: connection.fetchval("SELECT count(*) FROM images WHERE thumbnail_status = 'pending'")
        )
        return count

    def uploads_of(self, owner_id: str) -> dict[str, int]:
        """How many images an account owns, and how many distinct contents (stored originals) they name."""
        row = self._query(
            lambda connection: connection.fetchrow(
                "SELECT count(*) AS images, count(DISTINCT storage_key) AS contents FROM images WHERE owner_id = $1",
                uuid.UUID(owner_id),
            )
        )
        return {"images": int(row["images"]), "contents": int(row["contents"])}

    def queued_jobs(self, entrypoint: str, since: datetime) -> list[QueuedJob]:
        """The jobs of `entrypoint` queued since `since`, in the order they were queued, from pgqueuer's log.

        pgqueuer logs each transition of a job with the time of its statement: `queued` when an
        upload's INSERT ran, `picked` when a worker's dequeue claimed it (the first, should a job be
        picked again after a lost heartbeat).
        """
        rows = self._query(
            lambda connection: connection.fetch(
                """
                SELECT queued.job_id, queued.created AS queued_at, min(picked.created) AS picked_at
                FROM pgqueuer_log AS queued
                LEFT JOIN pgqueuer_log AS picked ON picked.job_id = queued.job_id AND picked.status = 'picked'
                WHERE queued.status = 'queued' AND queued.entrypoint = $1 AND queued.created >= $2
                GROUP BY queued.job_id, queued.created
                ORDER BY queued.job_id
                """,
                entrypoint,
                since,
            )
        )
        return [QueuedJob(int(row["job_id"]), row["queued_at"], row["picked_at"]) for row in rows]

    def _query(self, query: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async def run() -> T:
            connection = await asyncpg.connect(self.dsn)
            try:
                return await query(connection)
            finally:
                await connection.close()

        return asyncio.run(run())

    def drop(self) -> None:
        if self.created:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self.created = False


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(ADMIN_DATABASE_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def flush_redis() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()
