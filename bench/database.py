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
from typing import TypeVar

import asyncpg
import redis

from services import BACKEND_DIR, VENV_BIN

ADMIN_DATABASE_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")

T = TypeVar("T")


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

    def _query(self, query: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async def run() -> T:
            connection = await asyncpg.connect(self.url.replace("+asyncpg", ""))
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
