"""`python -m app.admin jobs failed|retry`: what failed for good, and running it again.

The image row is the truth about a thumbnail (ADR 0008, 0016): `failed` with its reason and attempts.
With JOB_QUEUE=postgres, pgqueuer also holds jobs that raised an unexpected error (a bug, or a bulk job
whose original is missing) as failed, for an operator to look at and queue again by id.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.database import background_session, create_engine, create_sessionmaker, read_session
from app.jobs.kinds import THUMBNAIL, Priority
from app.jobs.queue import JobQueue
from app.models import Image, ThumbnailStatus
from app.services.cache import MetadataCache
from app.services.redis_client import RedisHandle

COMMAND = "jobs"
FAILED_DESCRIPTION = """List the thumbnails that failed for good (image id, attempts, file name, reason) and,
with JOB_QUEUE=postgres, the jobs the queue holds as failed (job id, kind, subject, last error)."""
RETRY_DESCRIPTION = """Set failed thumbnails back to pending (attempts and error cleared) and queue their jobs,
and queue held jobs again. Name image ids (UUIDs) and queue job ids (numbers), or --all. With
JOB_QUEUE=memory the API processes' sweep takes the thumbnails within THUMBNAIL_SWEEP_INTERVAL_SECONDS."""
JOB_LISTING_LIMIT = 10_000  # held jobs looked at by `retry --all` and to check the ids named


async def failed(settings: Settings, *, limit: int) -> int:
    """Print the failed thumbnails and (postgres) the held jobs, oldest first; always 0."""
    engine = create_engine(settings)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with read_session(sessionmaker) as session:
            total = int(await session.scalar(select(func.count()).select_from(Image).where(_FAILED)) or 0)
            rows = (
                await session.execute(
                    select(Image.id, Image.thumbnail_attempts, Image.filename, Image.thumbnail_error)
                    .where(_FAILED)
                    .order_by(Image.created_at, Image.id)
                    .limit(limit)
                )
            ).all()
    finally:
        await engine.dispose()
    shown = f" (the oldest {len(rows):,})" if total > len(rows) else ""
    print(f"failed thumbnails: {total:,}{shown}")
    for image_id, attempts, filename, reason in rows:
        print(f"  {image_id}  attempts {attempts}  {filename}  {reason or '(no reason recorded)'}")
    if settings.job_queue != "postgres":
        print("held jobs: none (JOB_QUEUE=memory keeps no queue: the rows above are the whole story)")
        return 0
    queue = await JobQueue.open(settings)
    try:
        jobs = await queue.failed(limit)
        held = sum((await queue.depth()).failed.values())
        print(f"held jobs: {held:,}" + (f" (the oldest {len(jobs):,})" if held > len(jobs) else ""))
        for job in jobs:
            subject = (job.payload or b"").decode(errors="replace")
            print(f"  job {job.id}  {job.entrypoint}  {subject}  {await _last_error(queue, job.id)}")
    finally:
        await queue.close()
    return 0


async def _last_error(queue: JobQueue, job_id: int) -> str:
    """The error the job last raised, as pgqueuer logged it."""
    history = await queue.queries.job_log_history(job_id)  # type: ignore[arg-type]  # JobId is a NewType of int
    for entry in reversed(history):
        if entry.traceback is not None:
            return f"{entry.traceback.exception_type}: {entry.traceback.exception_message}"
    return "(no error logged)"


async def retry(settings: Settings, *, everything: bool, image_ids: Sequence[uuid.UUID], job_ids: Sequence[int]) -> int:
    """Retry the named (or all) failed thumbnails and held jobs; 1 if something named could not be retried."""
    engine = create_engine(settings)
    redis = RedisHandle(settings.redis_url)
    cache = MetadataCache(redis, key_prefix=settings.cache_key_prefix, ttl_seconds=settings.cache_ttl_seconds)
    queue = await JobQueue.open(settings) if settings.job_queue == "postgres" else None
    problems = 0
    try:
        sessionmaker = create_sessionmaker(engine)
        if everything or image_ids:
            reset = await _reset_thumbnails(sessionmaker, None if everything else image_ids)
            problems += await _explain_skipped(
                sessionmaker, [image_id for image_id in image_ids if image_id not in reset]
            )
            for image_id in reset:
                # A failed state may be cached (it was final); pending is never cached, so it must go.
                await cache.invalidate(image_id)
            print(f"{COMMAND} retry: {len(reset):,} failed thumbnails set back to pending")
            if reset and queue is not None:
                added = await queue.enqueue(THUMBNAIL, [str(image_id) for image_id in reset], Priority.USER)
                print(f"{COMMAND} retry: queued {added:,} thumbnail jobs")
            elif reset:
                interval = settings.thumbnail_sweep_interval_seconds
                print(f"{COMMAND} retry: the API processes' sweep takes them within {interval:g} s")
        if everything or job_ids:
            if queue is None:
                print(
                    f"{COMMAND} retry: JOB_QUEUE=memory holds no jobs: there are none to queue again", file=sys.stderr
                )
                problems += len(job_ids)
            else:
                problems += await _requeue(queue, everything=everything, job_ids=job_ids)
    finally:
        if queue is not None:
            await queue.close()
        unsent = cache.pending_invalidations
        await redis.close()
        await engine.dispose()
    if unsent:
        print(
            f"{COMMAND} retry: {unsent} cached entries could not be invalidated (Redis failed); clients may see the "
            f"thumbnail as failed for up to {settings.cache_ttl_seconds} s",
            file=sys.stderr,
        )
    return 1 if problems or unsent else 0


async def _reset_thumbnails(
    sessionmaker: async_sessionmaker[AsyncSession], image_ids: Sequence[uuid.UUID] | None
) -> list[uuid.UUID]:
    """Set failed thumbnails (all, or those named) back to pending, as fresh; the ids that were."""
    statement = (
        update(Image)
        .where(_FAILED)
        .values(
            thumbnail_status=ThumbnailStatus.PENDING,
            thumbnail_attempts=0,
            thumbnail_error=None,
            thumbnail_lease_until=None,
        )
        .returning(Image.id)
    )
    if image_ids is not None:
        statement = statement.where(Image.id.in_(image_ids))
    async with background_session(sessionmaker) as session:
        return list(await session.scalars(statement))


async def _explain_skipped(sessionmaker: async_sessionmaker[AsyncSession], image_ids: Sequence[uuid.UUID]) -> int:
    """Say why each named image was not retried; how many there were."""
    if not image_ids:
        return 0
    async with read_session(sessionmaker) as session:
        rows = await session.execute(select(Image.id, Image.thumbnail_status).where(Image.id.in_(image_ids)))
        states = dict(rows.tuples().all())
    for image_id in image_ids:
        state = states.get(image_id)
        reason = "no such image" if state is None else f"its thumbnail is {state}, not failed"
        print(f"{COMMAND} retry: {image_id}: {reason}; left alone", file=sys.stderr)
    return len(image_ids)


async def _requeue(queue: JobQueue, *, everything: bool, job_ids: Sequence[int]) -> int:
    """Queue held jobs again (all, or those named); how many named ones were not held."""
    held = {int(job.id) for job in await queue.failed(JOB_LISTING_LIMIT)}
    wanted = sorted(held) if everything else [job_id for job_id in job_ids if job_id in held]
    not_held = [job_id for job_id in job_ids if job_id not in held]
    for job_id in not_held:
        print(f"{COMMAND} retry: job {job_id}: the queue holds no failed job with this id; left alone", file=sys.stderr)
    if wanted:
        await queue.requeue(wanted)
    print(f"{COMMAND} retry: {len(wanted):,} held jobs queued again")
    return len(not_held)


_FAILED = Image.thumbnail_status == ThumbnailStatus.FAILED
