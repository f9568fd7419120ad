"""`python -m app.admin strip-metadata`: strip the originals stored before metadata stripping, with progress."""

from __future__ import annotations

import sys
import time

from app.config import Settings
from app.database import create_engine, create_sessionmaker
from app.services.cache import MetadataCache
from app.services.metadata_backfill import BATCH_SIZE, BackfillProgress, strip_stored_originals
from app.services.redis_client import RedisHandle
from app.services.storage import build_storage

__all__ = ["BATCH_SIZE", "DESCRIPTION", "run"]

DESCRIPTION = """Rewrite every original that still carries its metadata (uploaded before stripping, or while
STRIP_METADATA was off): stripped losslessly, stored once per content, metadata caches invalidated.
Safe while the service runs, safe to interrupt (Ctrl-C) and to run again: it resumes where it stopped.
Run it while Redis (if configured) answers, so cached metadata is invalidated at once."""


async def run(settings: Settings, *, batch_size: int) -> int:
    """Strip what is left; 0 when every image is done, 1 when some failed or caches could not be told."""
    engine = create_engine(settings)
    storage = build_storage(settings)
    redis = RedisHandle(settings.redis_url)
    cache = MetadataCache(redis, key_prefix=settings.cache_key_prefix, ttl_seconds=settings.cache_ttl_seconds)
    started = time.monotonic()
    try:
        await storage.startup()
        if redis.enabled and not await redis.ping():
            print("strip-metadata: Redis does not answer; start it (or unset REDIS_URL) and try again", file=sys.stderr)
            return 1
        progress = await strip_stored_originals(
            create_sessionmaker(engine), storage, cache, report=_print_progress, batch_size=batch_size
        )
    finally:
        await redis.close()
        await storage.close()
        await engine.dispose()
    elapsed = time.monotonic() - started
    print(f"strip-metadata: done in {elapsed:.1f} s: {_tally(progress)}")
    unsent = cache.pending_invalidations
    if unsent:
        print(
            f"strip-metadata: {unsent} cached entries could not be invalidated (Redis failed meanwhile); they "
            f"expire within {settings.cache_ttl_seconds} s",
            file=sys.stderr,
        )
    return 1 if progress.outcomes["failed"] or unsent else 0


def _print_progress(progress: BackfillProgress) -> None:
    share = 100 * progress.done / progress.total if progress.total else 100
    print(f"strip-metadata: {progress.done:,}/{progress.total:,} images ({share:.0f}%): {_tally(progress)}", flush=True)


def _tally(progress: BackfillProgress) -> str:
    return ", ".join(f"{count:,} {outcome}" for outcome, count in progress.outcomes.items())
