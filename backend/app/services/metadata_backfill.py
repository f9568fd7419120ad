"""Rewrite originals stored before metadata stripping: stripped, content-addressed, caches told.

Images uploaded before ADR 0013/0014 (or while STRIP_METADATA was off) keep their metadata and their
own key. Each is rewritten on its own: read, stripped (losslessly), stored under the key of the new
content (or joined to an identical original already there), its row moved to it in one locked
transaction, its cache entry invalidated, and the old object collected once nothing names it. Work is
done in batches in upload order; an interrupted run leaves every image either done or untouched, and
a new run picks up the rest (done rows are marked), so running it again is always safe.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Literal

import anyio
import anyio.to_thread
from sqlalchemy import bindparam, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.database import execute_alone, read_session, transaction
from app.media.containers import MalformedContainer
from app.media.metadata import strip_metadata
from app.models import Image
from app.services.cache import MetadataCache
from app.services.content_store import collect_garbage, lock_content, original_key, rows_naming
from app.services.storage import StorageBackend, StoredObjectMissing

logger = logging.getLogger(__name__)

BATCH_SIZE = 100
# stripped: metadata removed; clean: nothing to remove (the original may have moved to its content key);
# gone: deleted meanwhile; failed: missing or unreadable, left as it is (and logged).
Outcome = Literal["stripped", "clean", "gone", "failed"]


_OUTCOMES: tuple[Outcome, ...] = ("stripped", "clean", "gone", "failed")


@dataclass
class BackfillProgress:
    """Where a run stands: `done` of `total` images looked at so far, by outcome."""

    total: int
    done: int = 0
    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(_OUTCOMES, 0))


@dataclass(frozen=True)
class _Pending:
    id: uuid.UUID
    storage_key: str
    checksum: str
    content_type: str
    created_at: datetime


async def strip_stored_originals(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: StorageBackend,
    cache: MetadataCache,
    *,
    report: Callable[[BackfillProgress], None],
    batch_size: int = BATCH_SIZE,
) -> BackfillProgress:
    """Strip every original not yet stripped, reporting after each batch; returns the final tally."""
    async with read_session(sessionmaker) as session:
        total = await session.scalar(select(func.count()).select_from(Image).where(Image.metadata_stripped.is_(False)))
    progress = BackfillProgress(total=total or 0)
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        batch = await _next_batch(sessionmaker, after, batch_size)
        if not batch:
            break
        for image in batch:
            outcome = await _strip_one(sessionmaker, storage, cache, image)
            progress.done += 1
            progress.outcomes[outcome] += 1
        # Keyset paging: a failed image keeps its mark and is not met again in this run.
        after = (batch[-1].created_at, batch[-1].id)
        report(progress)
    return progress


async def _next_batch(
    sessionmaker: async_sessionmaker[AsyncSession], after: tuple[datetime, uuid.UUID] | None, size: int
) -> list[_Pending]:
    query = select(Image.id, Image.storage_key, Image.checksum, Image.content_type, Image.created_at).where(
        Image.metadata_stripped.is_(False)
    )
    if after is not None:
        query = query.where(tuple_(Image.created_at, Image.id) > tuple_(*after))
    async with read_session(sessionmaker) as session:
        rows = await session.execute(query.order_by(Image.created_at, Image.id).limit(size))
        return [_Pending(*row) for row in rows]


async def _strip_one(
    sessionmaker: async_sessionmaker[AsyncSession], storage: StorageBackend, cache: MetadataCache, image: _Pending
) -> Outcome:
    try:
        original = await storage.read_all(image.storage_key)
    except StoredObjectMissing:
        logger.warning("strip-metadata: the original of %s (%s) is missing; left as it is", image.id, image.storage_key)
        return "failed"
    try:
        stripped = await anyio.to_thread.run_sync(strip_metadata, original, image.content_type)
    except MalformedContainer:
        logger.warning("strip-metadata: the original of %s cannot be walked; left as it is", image.id)
        return "failed"
    checksum = await anyio.to_thread.run_sync(lambda: hashlib.sha256(stripped).hexdigest())
    new_key = original_key(checksum, image.content_type)
    if new_key == image.storage_key:
        # Stored under its content key already, and there was nothing to strip.
        updated, _ = await execute_alone(sessionmaker, _MARK_STRIPPED, {"stripped_id": image.id})
        return "clean" if updated else "gone"

    moved = await _move_row(sessionmaker, storage, image, stripped, checksum, new_key)
    if not moved:
        return "gone"
    await cache.invalidate(image.id)
    try:
        await collect_garbage(sessionmaker, storage, image.checksum, [image.storage_key])
    except Exception:
        logger.exception("strip-metadata: %s moved, but its old object %s stays", image.id, image.storage_key)
    return "stripped" if checksum != image.checksum else "clean"


async def _move_row(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: StorageBackend,
    image: _Pending,
    stripped: bytes,
    checksum: str,
    new_key: str,
) -> bool:
    """Point the row at the stripped content, storing it first unless a row names it already; False if the row went."""
    moved = stored = False
    try:
        async with transaction(sessionmaker) as connection:
            await lock_content(connection, checksum)
            if (await connection.execute(rows_naming([new_key]))).first() is None:
                # Marked before the write: a write cut short still leaves nothing behind.
                stored = True
                save = partial(storage.save_blocking, new_key, io.BytesIO(stripped), len(stripped), image.content_type)
                await anyio.to_thread.run_sync(save)
            parameters = {
                "moved_id": image.id,
                "old_key": image.storage_key,
                "new_key": new_key,
                "new_checksum": checksum,
                "new_size": len(stripped),
            }
            moved = (await connection.execute(_MOVE, parameters)).rowcount == 1
    finally:
        if stored and not moved:
            # Stored for a row that went meanwhile (or a failure): the object goes unless a row names it.
            with anyio.CancelScope(shield=True):
                await collect_garbage(sessionmaker, storage, checksum, [new_key])
    return moved


_MARK_STRIPPED = (
    update(Image)
    .where(Image.id == bindparam("stripped_id"), Image.metadata_stripped.is_(False))
    .values(metadata_stripped=True)
)
# Guarded by the old key: an image deleted, or already moved by another run, is left alone.
_MOVE = (
    update(Image)
    .where(Image.id == bindparam("moved_id"), Image.storage_key == bindparam("old_key"))
    .values(
        storage_key=bindparam("new_key"),
        checksum=bindparam("new_checksum"),
        file_size=bindparam("new_size"),
        metadata_stripped=True,
    )
)
