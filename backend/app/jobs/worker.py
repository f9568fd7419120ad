"""Running the queue's jobs in one process: pgqueuer's QueueManager, with Chitram's jobs behind it.

pgqueuer delivers a job to one worker, re-delivers it when that worker stops beating its heartbeat
(JOB_HEARTBEAT_TIMEOUT_SECONDS), picks the highest priority first and holds a job that raised an
unexpected error as `failed` for an operator. The image row stays the truth about a thumbnail
(ADR 0016): the job claims it with a lease this process renews, and this process sweeps for pending
rows that nobody holds and queues their jobs again, so a lost message never means a lost thumbnail.
It also removes expired images (`services.expiry`): their state is their row too.

Stopping (SIGTERM): no new job is taken, running jobs get WORKER_SHUTDOWN_SECONDS to finish, and the
rest are handed back: re-queued at once for another worker, their claims released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from pgqueuer import QueueManager, RetryRequested
from pgqueuer.models import Job

from app.jobs import maintenance
from app.jobs.kinds import REGENERATE, SCRUB, THUMBNAIL, Priority
from app.jobs.queue import JobQueue
from app.jobs.resources import JobResources
from app.observability.jobs import observed_job
from app.observability.tracing import span
from app.services import expiry

logger = logging.getLogger(__name__)

DEQUEUE_POLL = timedelta(seconds=1)  # how soon an idle worker notices a stale job (new ones arrive by NOTIFY)


class Worker:
    """Takes jobs from the queue and runs them here until `stop` is set, then drains as above."""

    def __init__(self, resources: JobResources, queue: JobQueue) -> None:
        self._resources = resources
        self._queue = queue
        self._hard_stop = asyncio.Event()
        self._jobs: dict[str, Callable[[str], Awaitable[None]]] = {
            THUMBNAIL: self._thumbnail,
            REGENERATE: lambda subject: maintenance.regenerate(resources, uuid.UUID(subject)),
            SCRUB: lambda subject: maintenance.scrub(resources, subject),
        }

    async def run(self, stop: asyncio.Event) -> None:
        settings = self._resources.settings
        manager = QueueManager(self._queue.queries)
        for kind in self._jobs:
            manager.entrypoint(kind, on_failure="hold")(self._entrypoint)
        jobs_at_once = settings.worker_jobs_per_process
        helpers = [
            asyncio.create_task(self._resources.thumbnails.keep_leases(), name="lease-renewals"),
            asyncio.create_task(self._resources.thumbnails.sweep(self.sweep_once), name="thumbnail-sweeps"),
            asyncio.create_task(self._expiry_sweeps(), name="expiry-sweeps"),
            asyncio.create_task(self._stop_when(stop, manager), name="worker-stop"),
        ]
        logger.info("worker started: %d jobs at once", jobs_at_once)
        try:
            await manager.run(
                dequeue_timeout=DEQUEUE_POLL,
                # Small batches: a worker holds few jobs, so work a user waits for never queues behind
                # a batch of bulk jobs taken just before it arrived.
                batch_size=jobs_at_once // 2,
                max_concurrent_tasks=jobs_at_once,
                heartbeat_timeout=timedelta(seconds=settings.job_heartbeat_timeout_seconds),
            )
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            logger.info("worker stopped")

    async def sweep_once(self) -> int:
        """Queue the jobs of pending thumbnails nobody holds; how many were not queued already."""
        lost = await self._resources.thumbnails.lost_jobs()
        if not lost:
            return 0
        # A span of its own, so the jobs it queues are traced (a lone client call starts no trace).
        with span("chitram.sweep.thumbnails", found=len(lost)):
            added = await self._queue.enqueue(THUMBNAIL, [str(image_id) for image_id in lost], Priority.USER)
        if added:
            logger.info("queued %d thumbnail jobs found by the sweep", added)
        return added

    async def _expiry_sweeps(self) -> None:
        """Remove expired images and ended accounts, beside the jobs (ADR 0017)."""
        resources = self._resources
        await expiry.run_sweeps(
            resources.sessionmaker, resources.storage, resources.cache, resources.settings.expiry_sweep_interval_seconds
        )

    async def _stop_when(self, stop: asyncio.Event, manager: QueueManager) -> None:
        await stop.wait()
        grace = self._resources.settings.worker_shutdown_seconds
        logger.info("stopping: taking no new jobs; running jobs have %.0f s to finish", grace)
        manager.shutdown.set()
        await asyncio.sleep(grace)
        self._hard_stop.set()

    async def _entrypoint(self, job: Job) -> None:
        subject = (job.payload or b"").decode(errors="replace")
        # Under pgqueuer's `process` span when the job carries its sender's trace context; else a trace of its own.
        with span(f"chitram.job.{job.entrypoint}", subject=subject), observed_job(job.entrypoint, job.created):
            await self._run(job)

    async def _run(self, job: Job) -> None:
        subject = (job.payload or b"").decode()
        work = asyncio.ensure_future(self._jobs[job.entrypoint](subject))
        stopped = asyncio.ensure_future(self._hard_stop.wait())
        try:
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not work.done():
                work.cancel()
                await asyncio.wait({work})
            stopped.cancel()
        if work.cancelled():
            logger.info("handing back %s job %s: the worker is stopping", job.entrypoint, subject)
            raise RetryRequested(delay=timedelta(0), reason="handed back by a stopping worker")
        work.result()  # its error, if any, for pgqueuer to hold

    async def _thumbnail(self, subject: str) -> None:
        await self._resources.thumbnails.process(uuid.UUID(subject))
