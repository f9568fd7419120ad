"""Running an operator command's jobs a window at a time, at low priority (ADR 0016).

With JOB_QUEUE=postgres a window's jobs go on the queue at BULK priority, so uploads' thumbnails run
first, and the command waits until the workers have done them. With JOB_QUEUE=memory there is no
shared queue: the command runs the same job functions itself, in its own process at a lower OS
priority. Either way a window is finished before the next one starts, so Ctrl-C leaves every subject
done, untouched or (postgres) queued for the workers to finish, and the command run again resumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.database import create_engine, create_sessionmaker
from app.jobs.kinds import Priority
from app.jobs.process import job_resources
from app.jobs.queue import JobQueue
from app.jobs.resources import JobResources
from app.services.cache import MetadataCache

logger = logging.getLogger(__name__)

WINDOW = 500  # jobs queued (or run) before the command waits for them, saves its place and reports
LOCAL_NICENESS = 10  # JOB_QUEUE=memory: the command's own process yields the CPU to the API's
FIRST_POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 1.0
# A window that makes no progress this long is most likely waiting for workers that do not run.
STALL_HINT_SECONDS = 30.0

Job = Callable[[JobResources, str], Awaitable[None]]


class JobRunner(ABC):
    """Runs one window of jobs of one kind to the end."""

    @abstractmethod
    async def run(self, subjects: Sequence[str]) -> int:
        """Run a job per subject and return once none is queued or running; how many failed."""


class QueuedJobs(JobRunner):
    """JOB_QUEUE=postgres: queued at BULK priority, run by the worker tier, waited for here."""

    def __init__(self, queue: JobQueue, kind: str, *, command: str) -> None:
        self._queue = queue
        self._kind = kind
        self._command = command

    async def run(self, subjects: Sequence[str]) -> int:
        failed_before = (await self._queue.depth()).failed.get(self._kind, 0)
        # A subject still queued from an interrupted run is skipped here, and waited for all the same.
        await self._queue.enqueue(self._kind, subjects, Priority.BULK)
        poll = FIRST_POLL_SECONDS
        pending = len(subjects)
        progress_at = time.monotonic()
        hinted = False
        while True:
            now_pending = await self._queue.pending(self._kind, subjects)
            if now_pending == 0:
                break
            if now_pending < pending:
                pending, progress_at = now_pending, time.monotonic()
            elif not hinted and time.monotonic() - progress_at > STALL_HINT_SECONDS:
                hinted = True
                print(
                    f"{self._command}: {now_pending:,} jobs have waited {STALL_HINT_SECONDS:.0f} s: is the worker "
                    "tier running (python -m app.worker)? They stay queued if you stop here.",
                    file=sys.stderr,
                    flush=True,
                )
            await anyio.sleep(poll)
            poll = min(poll * 2, MAX_POLL_SECONDS)
        # pgqueuer holds a job that raised as failed (`jobs failed` lists them, `jobs retry` runs them again).
        return max(0, (await self._queue.depth()).failed.get(self._kind, 0) - failed_before)


class LocalJobs(JobRunner):
    """JOB_QUEUE=memory: the jobs run here, a few at a time; a failure is logged and counted."""

    def __init__(self, resources: JobResources, job: Job, *, command: str) -> None:
        self._resources = resources
        self._job = job
        self._command = command
        self._limiter = anyio.CapacityLimiter(resources.settings.worker_jobs_per_process)

    async def run(self, subjects: Sequence[str]) -> int:
        failures = 0

        async def one(subject: str) -> None:
            nonlocal failures
            async with self._limiter:
                try:
                    await self._job(self._resources, subject)
                except Exception as error:
                    failures += 1
                    kind = type(error).__name__
                    logger.warning("%s: the job for %s failed: %s: %s", self._command, subject, kind, error)

        async with anyio.create_task_group() as group:
            for subject in subjects:
                group.start_soon(one, subject)
        return failures


@dataclass(frozen=True)
class BulkTools:
    """What a bulk command needs: the database (for its selection and its place) and a job runner."""

    sessionmaker: async_sessionmaker[AsyncSession]
    runner: JobRunner
    # The command's own cache handle when it runs jobs itself (to report invalidations Redis missed).
    cache: MetadataCache | None


@contextlib.asynccontextmanager
async def bulk_jobs(settings: Settings, kind: str, job: Job, *, command: str) -> AsyncIterator[BulkTools]:
    """The tools for `kind`'s jobs on this deployment's queue; everything is closed on exit."""
    if settings.job_queue == "postgres":
        engine = create_engine(settings)
        queue = await JobQueue.open(settings)
        try:
            yield BulkTools(create_sessionmaker(engine), QueuedJobs(queue, kind, command=command), None)
        finally:
            await queue.close()
            await engine.dispose()
        return
    lower_priority(command)
    async with job_resources(settings) as resources:
        yield BulkTools(resources.sessionmaker, LocalJobs(resources, job, command=command), resources.cache)


def lower_priority(command: str) -> None:
    """Make this process yield the CPU to the service's (JOB_QUEUE=memory runs the jobs here)."""
    try:
        os.nice(LOCAL_NICENESS)
    except (AttributeError, OSError):  # no nice() on this platform, or not allowed: run as we are
        return
    print(f"{command}: JOB_QUEUE=memory: running the jobs in this process, at lower priority", flush=True)
