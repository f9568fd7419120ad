"""Figures a scrape reads from shared state at that moment: the job queue, pending thumbnails, free disk.

They describe the whole deployment, not one process, so only the API's `/metrics` reports them (every
API process alike: dashboards take their `max`). Each read is bounded in time; one that fails or takes
too long is left out of that scrape rather than delaying or failing it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

import anyio
from prometheus_client.core import Metric
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models.image import Image, ThumbnailStatus
from app.observability.metrics import gauge
from app.services.storage import StorageBackend

logger = logging.getLogger(__name__)

READ_TIMEOUT_SECONDS = 2.0


class QueueDepth(Protocol):
    @property
    def waiting(self) -> int: ...

    @property
    def oldest_queued(self) -> datetime | None: ...


class CountedQueue(Protocol):
    """The job queue as far as a scrape needs it (app.jobs.queue.JobQueue)."""

    async def depth(self) -> QueueDepth: ...


async def current_figures(
    sessionmaker: async_sessionmaker[AsyncSession], storage: StorageBackend, queue: CountedQueue | None
) -> list[Metric]:
    """The deployment-wide gauges for one scrape: pending thumbnails, the queue (if any), free disk (if local)."""
    figures: list[Metric] = []

    async def pending_thumbnails() -> None:
        async with sessionmaker() as session:
            pending = await session.scalar(
                select(func.count()).select_from(Image).where(Image.thumbnail_status == ThumbnailStatus.PENDING)
            )
        figures.append(gauge("chitram_thumbnails_pending", "Images whose thumbnail is pending.", pending or 0))

    async def queue_depth() -> None:
        if queue is None:
            return
        depth = await queue.depth()
        age = 0.0
        if depth.oldest_queued is not None:
            age = max(0.0, (datetime.now(UTC) - depth.oldest_queued).total_seconds())
        figures.append(gauge("chitram_job_queue_depth", "Jobs queued and not yet picked by a worker.", depth.waiting))
        figures.append(
            gauge("chitram_job_queue_oldest_age_seconds", "How long the oldest queued job has waited (0: none).", age)
        )

    async def free_disk() -> None:
        free = await storage.free_bytes()
        if free is not None:
            figures.append(gauge("chitram_storage_free_bytes", "Free bytes on the local storage's disk.", free))

    async def bounded(read: str, reader: Callable[[], Awaitable[None]]) -> None:
        try:
            with anyio.fail_after(READ_TIMEOUT_SECONDS):
                await reader()
        except Exception as error:
            logger.warning("metrics: could not read %s: %s", read, type(error).__name__)

    async with anyio.create_task_group() as group:
        group.start_soon(bounded, "pending thumbnails", pending_thumbnails)
        group.start_soon(bounded, "the job queue", queue_depth)
        group.start_soon(bounded, "free disk", free_disk)
    return figures
