"""The worker tier for real: `python -m app` and `python -m app.worker` processes, killed and stopped by signals.

JOB_QUEUE=postgres unless a test says otherwise: the API processes queue a pgqueuer job per upload and
worker processes make the thumbnails, on one PostgreSQL, Redis and S3 (moto over HTTP). What a user
notices is read from the API (thumbnail_status); the database is read only to find the moment a job is
running (its claim on the row) and what the queue holds.

Issue 15's promise: a worker killed with SIGKILL in the middle of a job, or an API process killed right
after its 201, and then started again: the thumbnail is ready within 15 s, without anyone acting.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings
from app.jobs.kinds import REGENERATE, Priority
from app.jobs.queue import JobQueue
from tests.api.helpers import bucket_keys
from tests.api.waiting import wait_until
from tests.servers import app_server_env, app_servers, free_port, running_app_server, settings_env, worker_tier

RECOVERY_SECONDS = 15  # the bound, from the kill to a ready thumbnail
START_TIMEOUT_SECONDS = 120  # an import of the app takes seconds of CPU on a busy 2-core machine
_numbers = itertools.count(1)


def slow_png() -> bytes:
    """A 4000x3000 PNG, small to send but a few tenths of a second to decode and shrink: a job that
    lasts long enough to be caught running. Each call's content is new (one row differs)."""
    image = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")
    number = next(_numbers)
    for x in range(64):
        image.putpixel((x, 0), (number % 256, number // 256 % 256, x))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def queued_settings(settings: Settings, **overrides: object) -> Settings:
    return settings.model_copy(update={"job_queue": "postgres", **overrides})


def kill_tier(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the supervisor and its workers at once, as when a container or host dies."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(settings.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def upload(base_url: str, body: bytes) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        response = await client.post("/api/v1/images/upload", files={"file": ("big.png", body, "image/png")})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def thumbnail_status(base_url: str, image_id: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        response = await client.get(f"/api/v1/images/{image_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["thumbnail_status"])


async def wait_ready(base_url: str, image_ids: list[str], *, within: float, what: str) -> None:
    async def all_ready() -> bool:
        statuses = [await thumbnail_status(base_url, image_id) for image_id in image_ids]
        assert "failed" not in statuses, statuses
        return all(status == "ready" for status in statuses)

    await wait_until(all_ready, what=what, within=within)


async def running_jobs(engine: AsyncEngine, image_ids: list[str]) -> list[str]:
    """The images whose thumbnail job is running now: pending, with a live claim."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT id FROM images WHERE id = ANY(:ids) AND thumbnail_status = 'pending' "
                "AND thumbnail_lease_until > now()"
            ),
            {"ids": [uuid.UUID(image_id) for image_id in image_ids]},
        )
        return [str(row.id) for row in rows]


async def attempts_of(engine: AsyncEngine, image_id: str) -> int:
    async with engine.connect() as connection:
        return int(
            (
                await connection.execute(
                    text("SELECT thumbnail_attempts FROM images WHERE id = :id"), {"id": uuid.UUID(image_id)}
                )
            ).scalar_one()
        )


async def catch_a_running_job(engine: AsyncEngine, image_ids: list[str]) -> list[str]:
    async def some_running() -> list[str] | None:
        return await running_jobs(engine, image_ids) or None

    return await wait_until(some_running, what="a thumbnail job to be running", within=60)


async def test_worker_killed_mid_job_and_restarted_makes_the_thumbnail_within_15_s(
    settings: Settings, tmp_path: Path
) -> None:
    queued = queued_settings(settings, worker_jobs_per_process=2)
    with app_servers(queued, tmp_path, 1, start_timeout=START_TIMEOUT_SECONDS) as [(api, _log)]:
        async with database(queued) as engine:
            images = [await upload(api, slow_png()) for _ in range(4)]
            with worker_tier(queued, tmp_path / "worker.log") as worker:
                running = await catch_a_running_job(engine, images)
                kill_tier(worker)
                killed_at = time.monotonic()
            assert [await attempts_of(engine, image_id) for image_id in running] == [1] * len(running)
            with worker_tier(queued, tmp_path / "worker.log"):  # started again at once
                await wait_ready(api, images, within=RECOVERY_SECONDS + 10, what="the thumbnails after the kill")
                recovered_in = time.monotonic() - killed_at
            # The job that was running when its worker died ran again (a second attempt), by itself.
            assert all([await attempts_of(engine, image_id) >= 2 for image_id in running])
    assert recovered_in <= RECOVERY_SECONDS, f"ready {recovered_in:.1f} s after the kill"


@pytest.mark.parametrize("queue", ["postgres", "memory"])
async def test_api_killed_right_after_its_201_and_restarted_the_thumbnail_is_ready_within_15_s(
    settings: Settings, tmp_path: Path, queue: str
) -> None:
    """postgres: the job was queued before the 201, so the workers make the thumbnail whatever becomes of
    the API process; memory (the embedded mode, where the API process is the worker): the row was claimed
    by the dead process, and the restarted one takes the job once that claim runs out."""
    configured = settings.model_copy(update={"job_queue": queue})
    env = app_server_env(HOST="127.0.0.1", PORT=str(free_port()), **settings_env(configured))
    log = tmp_path / "api.log"
    base_url = f"http://{env['HOST']}:{env['PORT']}"
    with contextlib.ExitStack() as workers:
        if queue == "postgres":
            workers.enter_context(worker_tier(configured, tmp_path / "worker.log"))
        with running_app_server(env, log, start_timeout=START_TIMEOUT_SECONDS):
            pids = [line.split()[-1] for line in log.read_text().splitlines() if "Started server process" in line]
            image_id = await upload(base_url, slow_png())
            os.kill(int(pids[-1].strip("[]")), signal.SIGKILL)  # 0 ms after the 201
            killed_at = time.monotonic()
        with running_app_server(env, log, start_timeout=START_TIMEOUT_SECONDS):  # started again at once
            await wait_ready(base_url, [image_id], within=RECOVERY_SECONDS + 10, what="the thumbnail")
            recovered_in = time.monotonic() - killed_at
    assert recovered_in <= RECOVERY_SECONDS, f"ready {recovered_in:.1f} s after the kill"


async def test_sigterm_lets_running_jobs_finish_and_the_worker_exits_cleanly(
    settings: Settings, tmp_path: Path
) -> None:
    queued = queued_settings(settings, worker_jobs_per_process=2, worker_shutdown_seconds=30)
    with app_servers(queued, tmp_path, 1, start_timeout=START_TIMEOUT_SECONDS) as [(api, _log)]:
        async with database(queued) as engine:
            images = [await upload(api, slow_png()) for _ in range(3)]
            with worker_tier(queued, tmp_path / "worker.log") as worker:
                running = await catch_a_running_job(engine, images)
                worker.send_signal(signal.SIGTERM)  # to the supervisor, which passes it on
                assert worker.wait(timeout=60) == 0
            for image_id in running:  # finished, not abandoned: one attempt, and ready
                assert await thumbnail_status(api, image_id) == "ready"
                assert await attempts_of(engine, image_id) == 1


async def test_sigterm_past_its_bound_hands_running_jobs_back_for_another_worker(
    settings: Settings, tmp_path: Path
) -> None:
    """With no time to finish, a stopping worker re-queues its running job and releases the row's claim,
    so the next worker takes it at once rather than after a heartbeat timeout or a lease."""
    impatient = queued_settings(
        settings, worker_shutdown_seconds=0, job_lease_seconds=60, job_heartbeat_timeout_seconds=60
    )
    with app_servers(impatient, tmp_path, 1, start_timeout=START_TIMEOUT_SECONDS) as [(api, _log)]:
        async with database(impatient) as engine:
            images = [await upload(api, slow_png()) for _ in range(3)]
            with worker_tier(impatient, tmp_path / "worker.log") as worker:
                await catch_a_running_job(engine, images)
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(timeout=60) == 0
            # Handed back: no claim is left, and no job is marked as picked by the worker that left.
            assert await running_jobs(engine, images) == []
            async with engine.connect() as connection:
                picked_jobs = text("SELECT count(*) FROM pgqueuer WHERE status = 'picked'")
                picked = (await connection.execute(picked_jobs)).scalar()
            assert picked == 0
            # Leases and heartbeats of a minute: only a handed-back job is done this soon.
            with worker_tier(impatient, tmp_path / "worker.log"):
                await wait_ready(api, images, within=45, what="the handed-back thumbnails")
    assert "handing back thumbnail job" in (tmp_path / "worker.log").read_text()


async def test_a_fresh_upload_runs_before_a_backfill_of_100000_jobs(settings: Settings, tmp_path: Path) -> None:
    queued = queued_settings(settings)
    queue = await JobQueue.open(queued)
    try:
        # Bulk jobs for images that do not exist: each is quick, but there are 100,000 of them.
        bulk = [str(uuid.uuid4()) for _ in range(100_000)]
        assert await queue.enqueue(REGENERATE, bulk, Priority.BULK) == len(bulk)
        with (
            worker_tier(queued, tmp_path / "worker.log"),  # starts while the API server does
            app_servers(queued, tmp_path, 1, start_timeout=START_TIMEOUT_SECONDS) as [(api, _log)],
        ):
            async with database(queued) as engine:

                async def bulk_started() -> bool:
                    return (await queue.depth()).queued.get(REGENERATE, 0) < len(bulk)

                await wait_until(bulk_started, what="the worker to work on the backfill", within=60)
                image_id = await upload(api, slow_png())
                await wait_ready(api, [image_id], within=15, what="the fresh upload's thumbnail")
                assert await attempts_of(engine, image_id) == 1
        left = (await queue.depth()).queued.get(REGENERATE, 0)
        assert left > len(bulk) * 0.9, f"only {left} bulk jobs were left: the upload waited for the backfill"
    finally:
        await queue.close()


def worker_pids(supervisor: subprocess.Popen[bytes]) -> set[int]:
    """The worker processes the supervisor runs (its children)."""
    children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split()
    return {int(pid) for pid in children}


async def test_supervisor_starts_a_killed_worker_process_again(settings: Settings, tmp_path: Path) -> None:
    queued = queued_settings(settings)
    with (
        app_servers(queued, tmp_path, 1, start_timeout=START_TIMEOUT_SECONDS) as [(api, _log)],
        worker_tier(queued, tmp_path / "worker.log", processes=2) as supervisor,
    ):

        async def two_workers() -> set[int] | None:
            pids = worker_pids(supervisor)
            return pids if len(pids) == 2 else None

        first = await wait_until(two_workers, what="two worker processes", within=60)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> set[int] | None:
            pids = worker_pids(supervisor)
            return pids if len(pids) == 2 and victim not in pids else None

        await wait_until(replaced, what="the killed worker's replacement", within=30)
        image_id = await upload(api, slow_png())
        await wait_ready(api, [image_id], within=30, what="a thumbnail after the replacement")
    assert "exited with -9; starting it again" in (tmp_path / "worker.log").read_text()


async def test_a_transient_failure_on_the_worker_tier_is_retried_until_the_thumbnail_is_made(
    settings: Settings, tmp_path: Path
) -> None:
    """The original is unreadable for a while (a storage outage, for real: the file is moved away): the
    worker retries with growing delays, and makes the thumbnail once the storage is back."""
    images = tmp_path / "images"
    queued = queued_settings(
        settings,
        storage_backend="local",
        local_storage_path=images,
        thumbnail_retry_base_seconds=0.2,
        thumbnail_max_attempts=50,
    )
    with app_servers(queued, tmp_path, 1, start_timeout=START_TIMEOUT_SECONDS) as [(api, _log)]:
        async with database(queued) as engine:
            image_id = await upload(api, slow_png())
            [stored] = [path for path in images.rglob("*.png") if "originals" in path.parts]
            aside = tmp_path / "aside.png"
            stored.rename(aside)
            with worker_tier(queued, tmp_path / "worker.log"):

                async def retried() -> bool:
                    return await attempts_of(engine, image_id) >= 2

                await wait_until(retried, what="a second attempt", within=60)
                assert await thumbnail_status(api, image_id) == "pending"
                aside.rename(stored)
                await wait_ready(api, [image_id], within=30, what="the thumbnail once the storage is back")
            async with engine.connect() as connection:
                error = (
                    await connection.execute(
                        text("SELECT thumbnail_error FROM images WHERE id = :id"), {"id": uuid.UUID(image_id)}
                    )
                ).scalar()
            assert error is None


async def test_two_worker_processes_make_each_thumbnail_exactly_once(settings: Settings, tmp_path: Path) -> None:
    """Two workers take jobs side by side (and both sweep): each thumbnail is claimed once, by one of them,
    and stored once (one object per image, the one its row names)."""
    queued = queued_settings(settings)
    with (
        worker_tier(queued, tmp_path / "worker.log", processes=2),
        app_servers(queued, tmp_path, 1, start_timeout=START_TIMEOUT_SECONDS) as [(api, _log)],
    ):
        async with database(queued) as engine:
            images = [await upload(api, slow_png()) for _ in range(8)]
            await wait_ready(api, images, within=90, what="every thumbnail")
            assert [await attempts_of(engine, image_id) for image_id in images] == [1] * len(images)
            async with engine.connect() as connection:
                ours = {"ids": [uuid.UUID(image_id) for image_id in images]}
                named = text("SELECT thumbnail_key FROM images WHERE id = ANY(:ids)")
                keys = (await connection.execute(named, ours)).scalars().all()
    stored = {key for key in bucket_keys(queued) if key.startswith("thumbnails/")}
    assert stored == set(keys)
    assert len(stored) == len(images)
