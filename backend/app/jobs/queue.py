"""The job queue's one door to pgqueuer's tables (JOB_QUEUE=postgres, ADR 0016).

Jobs live in pgqueuer's tables in the app's PostgreSQL database (migration 0006 installs them), reached
through a small asyncpg pool of their own: pgqueuer speaks asyncpg directly, and a job must be
queued whatever the state of SQLAlchemy's pool. Every job carries an id as its payload (an image
id, or a checksum for a scrub) and a dedupe key, so a job queued twice (an upload and a sweep, an
operator command run again) runs once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from pgqueuer import Queries
from pgqueuer.db import AsyncpgPoolDriver
from pgqueuer.models import Job
from sqlalchemy.engine import make_url

from app.config import Settings
from app.jobs.kinds import THUMBNAIL, Priority, dedupe_key
from app.services.thumbnail_jobs import NewUpload

logger = logging.getLogger(__name__)

ENQUEUE_BATCH = 1000  # jobs per INSERT when a sweep or a command queues many


def asyncpg_dsn(database_url: str) -> str:
    """DATABASE_URL (a SQLAlchemy URL) as the plain PostgreSQL DSN asyncpg takes."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class QueueDepth:
    """Jobs waiting and running, by kind, and how long the oldest waiting one has waited."""

    queued: dict[str, int]
    picked: dict[str, int]
    failed: dict[str, int]
    oldest_queued: datetime | None

    @property
    def waiting(self) -> int:
        return sum(self.queued.values())


class JobQueue:
    """Queue, count, list and re-run jobs; `Queries` is pgqueuer's own, for its worker loop."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.queries = Queries(AsyncpgPoolDriver(pool))

    @classmethod
    async def open(cls, settings: Settings, *, max_connections: int = 4) -> JobQueue:
        pool = await asyncpg.create_pool(
            asyncpg_dsn(settings.database_url), min_size=1, max_size=max_connections, command_timeout=30
        )
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def enqueue(self, kind: str, subjects: Sequence[str], priority: Priority) -> int:
        """Queue one job of `kind` per subject (skipping those queued or running already); how many were new."""
        added = 0
        for start in range(0, len(subjects), ENQUEUE_BATCH):
            batch = subjects[start : start + ENQUEUE_BATCH]
            ids = await self.queries.enqueue(
                [kind] * len(batch),
                [subject.encode() for subject in batch],
                [int(priority)] * len(batch),
                dedupe_key=[dedupe_key(kind, subject) for subject in batch],
                on_conflict="skip",
            )
            added += sum(1 for job_id in ids if job_id is not None)
        return added

    async def depth(self) -> QueueDepth:
        rows = await self._pool.fetch(
            "SELECT entrypoint, status::text AS status, count(*) AS jobs, min(created) AS oldest "
            "FROM pgqueuer GROUP BY entrypoint, status"
        )
        by_status: dict[str, dict[str, int]] = {"queued": {}, "picked": {}, "failed": {}}
        oldest: datetime | None = None
        for row in rows:
            by_status.setdefault(row["status"], {})[row["entrypoint"]] = int(row["jobs"])
            if row["status"] == "queued" and (oldest is None or row["oldest"] < oldest):
                oldest = row["oldest"]
        return QueueDepth(by_status["queued"], by_status["picked"], by_status["failed"], oldest)

    async def pending(self, kind: str, subjects: Sequence[str]) -> int:
        """How many of these subjects still have a job of `kind` queued or running."""
        keys = [dedupe_key(kind, subject) for subject in subjects]
        count = await self._pool.fetchval(
            "SELECT count(*) FROM pgqueuer WHERE dedupe_key = ANY($1::text[]) AND status IN ('queued', 'picked')",
            keys,
        )
        return int(count)

    async def failed(self, limit: int = 100) -> list[Job]:
        """Jobs that raised an unexpected error and are held for an operator (oldest first)."""
        return await self.queries.list_failed_jobs(limit=limit, order="ASC")

    async def requeue(self, job_ids: Sequence[int]) -> None:
        await self.queries.requeue_jobs(list(job_ids))  # type: ignore[arg-type]  # JobId is a NewType of int


class QueuedThumbnails:
    """The upload path's thumbnail queue with JOB_QUEUE=postgres: one job per upload, run by a worker."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue

    def lease_for_new_upload(self) -> None:
        return None  # a worker claims the row when it takes the job

    async def submit(self, image_id: uuid.UUID, upload: NewUpload | None = None) -> None:
        try:
            await self._queue.enqueue(THUMBNAIL, [str(image_id)], Priority.USER)
        except Exception as error:  # whatever failed, the upload stands
            # The row says pending: a worker's sweep queues the job again (ADR 0016).
            logger.warning("queueing the thumbnail of %s failed (%s); a sweep will", image_id, type(error).__name__)
