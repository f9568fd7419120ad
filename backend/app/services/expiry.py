"""Removing what has ended: expired images, bytes and all, then the rows of deleted accounts (ADR 0017).

An image answers 404 from its `expires_at` on (`image_access`); this sweep, run every
EXPIRY_SWEEP_INTERVAL_SECONDS wherever background work runs (an API process with JOB_QUEUE=memory,
every worker process with JOB_QUEUE=postgres), then removes it: its row and its count in the owner's
usage in one transaction, then, once that has committed, its cached metadata and the objects no other
image uses (`image_service.collect_removed`, as a delete does). Deleting an account sets `expires_at`
on all its images, so they go the same way; the account's row goes once it owns none.

The state is the rows themselves: a process killed mid-sweep, or stopped for a week, leaves nothing
the next sweep (in any process) does not find. Several processes may sweep at once: on PostgreSQL each
batch locks its rows `FOR UPDATE SKIP LOCKED`, so two never take the same image; on SQLite a batch
takes the database's one write lock before it reads.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import delete, exists, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.database import background_session
from app.models import Image, User
from app.models.base import utc_now
from app.services import image_service
from app.services.cache import MetadataCache
from app.services.image_service import RemovedImage
from app.services.storage import StorageBackend

logger = logging.getLogger(__name__)

BATCH_SIZE = 100


async def sweep_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: StorageBackend,
    cache: MetadataCache | None,
    *,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Remove every image whose moment has come, a batch at a time, then the ended accounts; how many images."""
    forget_cached = None if cache is None else cache.invalidate
    total = 0
    while True:
        removed = await _remove_batch(sessionmaker, batch_size)
        for image in removed:
            await image_service.collect_removed(sessionmaker, storage, image, forget_cached)
        total += len(removed)
        # A short batch: nothing is left, or the rest is locked by another process's sweep.
        if len(removed) < batch_size:
            break
    await _delete_ended_accounts(sessionmaker)
    return total


async def _remove_batch(sessionmaker: async_sessionmaker[AsyncSession], batch_size: int) -> list[RemovedImage]:
    async with background_session(sessionmaker) as session:
        if session.get_bind().dialect.name == "sqlite":
            # Take the write lock first: what is read next cannot then be removed by another process meanwhile.
            await session.execute(_SQLITE_WRITE_LOCK)
        query = (
            select(Image)
            .where(Image.expires_at <= utc_now())
            .order_by(Image.expires_at)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        images = list(await session.scalars(query))
        # Owners' usage rows are locked in one order by every sweep, so two at once never deadlock.
        images.sort(key=lambda image: (image.owner_id is not None, str(image.owner_id)))
        return [await image_service.remove_row(session, image) for image in images]


async def _delete_ended_accounts(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    # An active account can never be deleted here; a deleted one can never upload again (`usage.reserve`).
    async with background_session(sessionmaker) as session:
        result = await session.execute(
            delete(User).where(User.deleted_at.is_not(None), ~exists().where(Image.owner_id == User.id))
        )
    deleted: int = getattr(result, "rowcount", 0) or 0
    if deleted:
        logger.info("expiry: removed %d deleted accounts", deleted)


async def run_sweeps(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: StorageBackend,
    cache: MetadataCache | None,
    interval_seconds: float,
) -> None:
    """Sweep now and then every `interval_seconds`, for the process's lifetime (cancel to stop)."""
    failing = False
    while True:
        try:
            removed = await sweep_once(sessionmaker, storage, cache)
        except Exception:
            if not failing:  # once per outage, not once per interval
                logger.exception("expiry sweep failed; trying again every %.0f s", interval_seconds)
            failing = True
        else:
            if failing:
                logger.info("expiry sweep works again")
            failing = False
            if removed:
                logger.info("expiry: removed %d expired images", removed)
        await asyncio.sleep(interval_seconds)


_SQLITE_WRITE_LOCK = update(Image).where(text("0 = 1")).values(id=Image.id).execution_options(synchronize_session=False)
