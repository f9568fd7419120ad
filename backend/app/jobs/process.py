"""One worker process: builds what jobs need, runs a `Worker` until SIGTERM or SIGINT, cleans up."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

from app.config import Settings
from app.database import create_engine, create_sessionmaker
from app.jobs.queue import JobQueue
from app.jobs.resources import JobResources
from app.jobs.worker import Worker
from app.observability import metrics
from app.observability.tracing import configure_tracing, instrument_engine, shutdown_tracing
from app.services.cache import MetadataCache
from app.services.redis_client import RedisHandle
from app.services.storage import build_storage
from app.services.thumbnail_jobs import ThumbnailJobs
from app.services.variants import VariantService


@contextlib.asynccontextmanager
async def job_resources(settings: Settings) -> AsyncIterator[JobResources]:
    """Engine, storage and the job code's services for a process of its own; closed on exit."""
    engine = create_engine(settings)
    instrument_engine(engine)
    storage = build_storage(settings)
    sessionmaker = create_sessionmaker(engine)
    variants = VariantService(sessionmaker=sessionmaker, storage=storage, settings=settings)
    thumbnails = ThumbnailJobs(sessionmaker=sessionmaker, storage=storage, settings=settings, variants=variants)
    # Only to invalidate what jobs change (as the API processes do); a worker serves no metadata itself.
    redis = RedisHandle(settings.redis_url)
    cache = MetadataCache(redis, key_prefix=settings.cache_key_prefix, ttl_seconds=settings.cache_ttl_seconds)
    pool_capacity = settings.db_pool_size + settings.db_max_overflow
    if settings.metrics_enabled:
        metrics.announce_build()
        metrics.watch_pool(engine, pool_capacity)
    try:
        await storage.startup()
        yield JobResources(settings, sessionmaker, storage, thumbnails, variants, cache if redis.enabled else None)
    finally:
        await thumbnails.close()
        await redis.close()
        await storage.close()
        await engine.dispose()
        if settings.metrics_enabled:
            metrics.unwatch_pool(pool_capacity)


async def run_worker_process(settings: Settings) -> None:
    configure_tracing("chitram-worker")  # here, after the fork: the exporter's thread is this process's
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with job_resources(settings) as resources:
        queue = await JobQueue.open(settings)
        try:
            await Worker(resources, queue).run(stop)
        finally:
            await queue.close()
            # A forked process ends in os._exit, which runs no atexit hook: its last spans are sent here.
            shutdown_tracing()
