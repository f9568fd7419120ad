"""Expiry across restarts, with real processes (ADR 0017): the state is the row, so an image whose moment
passed while nothing ran is removed, bytes and all, soon after background work runs again.

Embedded (SQLite, local disk, JOB_QUEUE=memory): the API process sweeps, and is SIGKILLed before the
moment. Worker tier (PostgreSQL, S3, JOB_QUEUE=postgres): the API processes never sweep; the workers do,
and they are the ones killed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from app.services.content_store import original_key
from tests.api.helpers import bucket_keys
from tests.api.waiting import wait_until
from tests.conftest import BACKEND_DIR
from tests.factories import make_jpeg
from tests.servers import app_server_env, app_servers, free_port, running_app_server, worker_tier

START_TIMEOUT_SECONDS = 120  # an import of the app takes seconds of CPU on a busy machine
REMOVED_WITHIN_SECONDS = 15


async def upload_expiring(base_url: str, seconds: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        response = await client.post(
            "/api/v1/images/upload",
            files={"file": ("soon.jpg", make_jpeg(160, 120), "image/jpeg")},
            data={"expires_in": str(seconds)},
        )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def metadata_status(base_url: str, image_id: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return (await client.get(f"/api/v1/images/{image_id}")).status_code


async def sleep_past(expires_at: str) -> None:
    ends = datetime.fromisoformat(expires_at.replace("Z", "+00:00")).timestamp()
    await anyio.sleep(max(0.0, ends - time.time()) + 0.5)


def server_pid(log: Path) -> int:
    started = [line for line in log.read_text().splitlines() if "Started server process" in line]
    return int(started[-1].split()[-1].strip("[]"))


async def test_an_image_that_expired_while_the_embedded_server_was_dead_goes_once_it_is_back(
    tmp_path: Path,
) -> None:
    database = tmp_path / "chitram.db"
    storage = tmp_path / "images"
    env = app_server_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        LOCAL_STORAGE_PATH=str(storage),
        EXPIRY_SWEEP_INTERVAL_SECONDS="1",
        HOST="127.0.0.1",
        PORT=str(free_port()),
    )
    await anyio.run_process([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=BACKEND_DIR, env=env)
    log = tmp_path / "server.log"

    def row_exists(image_id: str) -> bool:
        with sqlite3.connect(database) as connection:
            found = connection.execute("SELECT 1 FROM images WHERE id = ?", (image_id.replace("-", ""),)).fetchone()
        return found is not None

    with running_app_server(env, log, start_timeout=START_TIMEOUT_SECONDS) as base_url:
        created = await upload_expiring(base_url, 2)
        os.kill(server_pid(log), signal.SIGKILL)  # long before the moment
    stored = storage / original_key(created["checksum"], created["content_type"])
    await sleep_past(created["expires_at"])
    # Nothing ran meanwhile: the row and the bytes are still there.
    assert row_exists(created["id"])
    assert stored.exists()

    with running_app_server(env, log, start_timeout=START_TIMEOUT_SECONDS) as base_url:
        assert await metadata_status(base_url, created["id"]) == 404

        async def removed() -> bool:
            return not row_exists(created["id"]) and not stored.exists()

        await wait_until(removed, what="the expired image's row and bytes to go", within=REMOVED_WITHIN_SECONDS)
    # Its thumbnail went too (a `.part` file is a write the SIGKILL cut short, never an object).
    thumbnails = [path for path in storage.rglob("*") if path.is_file() and created["id"] in path.name]
    assert not [path for path in thumbnails if not path.name.endswith(".part")]


async def test_on_the_worker_tier_the_workers_remove_what_expired_while_they_were_dead(
    settings: Settings, tmp_path: Path
) -> None:
    queued = settings.model_copy(update={"job_queue": "postgres", "expiry_sweep_interval_seconds": 1.0})
    engine = create_async_engine(queued.database_url)

    async def row_exists(image_id: str) -> bool:
        async with engine.connect() as connection:
            found = await connection.execute(text("SELECT 1 FROM images WHERE id = :id"), {"id": image_id})
            return found.first() is not None

    try:
        with app_servers(queued, tmp_path, 1, start_timeout=START_TIMEOUT_SECONDS) as [(api, _log)]:
            with worker_tier(queued, tmp_path / "worker.log") as worker:
                created = await upload_expiring(api, 2)
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
            key = original_key(created["checksum"], created["content_type"])
            await sleep_past(created["expires_at"])
            # The API process answers 404 from the moment on, but removes nothing itself.
            assert await metadata_status(api, created["id"]) == 404
            assert await row_exists(created["id"])
            assert key in bucket_keys(queued)

            with worker_tier(queued, tmp_path / "worker.log"):

                async def removed() -> bool:
                    return not await row_exists(created["id"]) and key not in bucket_keys(queued)

                await wait_until(removed, what="the workers to remove the expired image", within=START_TIMEOUT_SECONDS)
    finally:
        await engine.dispose()
