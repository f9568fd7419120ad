"""Bulk jobs the operator commands queue at low priority: regenerating thumbnails, scrubbing originals.

Each receives an id (an image's, a content's checksum), opens its own sessions and is idempotent: run
twice, or again after an interrupted command, it does no harm. They run on the worker tier
(JOB_QUEUE=postgres) or in the command's own process (JOB_QUEUE=memory; `app.admin`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.database import read_session, transaction
from app.jobs.resources import JobResources
from app.media.thumbnails import RenderedThumbnail, render_thumbnail, thumbnail_key
from app.models import Image, IntegrityFinding, IntegrityProblem, ThumbnailStatus
from app.models.base import utc_now
from app.services.content_store import collect_garbage, lock_content
from app.services.storage import StorageBackend, StoredObjectMissing
from app.services.thumbnail_recipe import thumbnail_recipe
from app.utils.worker_threads import run_blocking

logger = logging.getLogger(__name__)


class OriginalMissing(Exception):
    """The stored original a job needs is not in the store (`scrub` records such originals)."""


def regenerated_thumbnail_key(image_id: uuid.UUID, rendered: RenderedThumbnail) -> str:
    """Where a regenerated thumbnail goes: named by its image and its own bytes, never by what it replaces.

    So a key that a row names only ever holds the bytes that row describes, whatever the settings of the
    day, and the same picture made again lands on the same key.
    """
    return thumbnail_key(f"{image_id}-{rendered.checksum[:16]}", rendered.content_type)


async def regenerate(resources: JobResources, image_id: uuid.UUID) -> None:
    """Make this image's thumbnail (and pregenerated variants) again with today's settings.

    Only a ready thumbnail whose recipe is not today's is made again: a pending one is the normal
    job's, a failed one is for `jobs retry`. Its bytes are written before the row names them, under a
    key of their own, so every client is served the old thumbnail or the new one, whole; an image that
    shares the old one (ADR 0014) keeps it until its own job moves on, and the old object goes once no
    row names it. An image with the same content whose thumbnail is today's already is shared instead.
    """
    recipe = thumbnail_recipe(resources.settings)
    async with read_session(resources.sessionmaker) as session:
        image = (await session.execute(_STATE, {"image_id": image_id})).first()
    if image is None or image.thumbnail_status != ThumbnailStatus.READY or image.thumbnail_recipe == recipe:
        return  # deleted, not ready, or done already (by an earlier run, or a sibling's job that shared)
    rendered: RenderedThumbnail | None = None
    if not await _shares_current_thumbnail(resources, image_id, image.storage_key, recipe):
        if resources.settings.variant_pregenerate:
            # Before the thumbnail is recorded: a job that dies in between is run again, variants included.
            await resources.variants.pregenerate(image.checksum, image.storage_key)
        rendered = await _render(resources, image_id, image.storage_key)
    placeholder_changed, replaced = await _record(resources, image_id, image.checksum, recipe, rendered)
    if placeholder_changed and resources.cache is not None:
        await resources.cache.invalidate(image_id)  # the only field of the metadata a thumbnail changes
    if replaced is None:
        return
    try:
        await collect_garbage(resources.sessionmaker, resources.storage, image.checksum, [replaced])
    except Exception:
        logger.exception("regenerate: %s has its new thumbnail, but the old object %s stays", image_id, replaced)


async def _shares_current_thumbnail(
    resources: JobResources, image_id: uuid.UUID, storage_key: str, recipe: str
) -> bool:
    """Whether an image with the same content has a thumbnail of today's recipe (a hint, read without the lock)."""
    async with read_session(resources.sessionmaker) as session:
        parameters = {"image_id": image_id, "storage_key": storage_key, "recipe": recipe}
        return (await session.execute(_CURRENT_SIBLING, parameters)).first() is not None


async def _render(resources: JobResources, image_id: uuid.UUID, storage_key: str) -> RenderedThumbnail:
    settings = resources.settings
    try:
        source = await resources.storage.read_all(storage_key)
    except StoredObjectMissing:
        raise OriginalMissing(f"the original {storage_key} of image {image_id} is missing") from None
    render = partial(render_thumbnail, io.BytesIO(source), max_side=settings.thumbnail_size)
    with anyio.fail_after(settings.thumbnail_timeout_seconds):
        return await run_blocking(render, abandon_on_cancel=True)


@dataclass(frozen=True)
class _Thumbnail:
    """A row's thumbnail fields (a ready row has all but the placeholder)."""

    key: str | None
    content_type: str | None
    size: int | None
    checksum: str | None
    placeholder: str | None


async def _record(
    resources: JobResources,
    image_id: uuid.UUID,
    checksum: str,
    recipe: str,
    rendered: RenderedThumbnail | None,
) -> tuple[bool, str | None]:
    """Store (if need be) and record the new thumbnail under the content's lock.

    Returns whether the placeholder changed, and the key the row no longer names (None when it kept its
    key: the same bytes, the same shared thumbnail, or a row that went, is not ready, or is done).
    """
    stored: str | None = None
    recorded = False
    replaced: str | None = None
    placeholder_changed = False
    try:
        async with transaction(resources.sessionmaker) as connection:
            await lock_content(connection, checksum)
            current = (await connection.execute(_STATE, {"image_id": image_id})).first()
            if current is None or current.thumbnail_status != ThumbnailStatus.READY:
                return False, None
            if current.thumbnail_recipe == recipe:
                return False, None
            parameters = {"image_id": image_id, "storage_key": current.storage_key, "recipe": recipe}
            sibling = (await connection.execute(_CURRENT_SIBLING, parameters)).first()
            if sibling is not None:
                new = _Thumbnail(
                    sibling.thumbnail_key,
                    sibling.thumbnail_content_type,
                    sibling.thumbnail_size,
                    sibling.thumbnail_checksum,
                    sibling.placeholder,
                )
            else:
                if rendered is None:
                    # The sibling seen before the lock went meanwhile (rare): rendered here, under the lock.
                    rendered = await _render(resources, image_id, current.storage_key)
                old = _Thumbnail(
                    current.thumbnail_key,
                    current.thumbnail_content_type,
                    current.thumbnail_size,
                    current.thumbnail_checksum,
                    current.placeholder,
                )
                new, stored = await _store(resources.storage, image_id, old, rendered)
            updated = await _update(connection, image_id, current.thumbnail_key, new, recipe)
            if updated and current.thumbnail_key != new.key:
                replaced = current.thumbnail_key
            placeholder_changed = updated and current.placeholder != new.placeholder
        recorded = updated
        return placeholder_changed, replaced
    finally:
        if stored is not None and not recorded:
            # Stored for a row that did not take it (it went, or a failure): it goes unless a row names it.
            with anyio.CancelScope(shield=True):
                await collect_garbage(resources.sessionmaker, resources.storage, checksum, [stored])


async def _store(
    storage: StorageBackend, image_id: uuid.UUID, old: _Thumbnail, rendered: RenderedThumbnail
) -> tuple[_Thumbnail, str | None]:
    """Write the rendered thumbnail where it belongs; what to record, and the key written (None if none)."""
    same_bytes = rendered.checksum == old.checksum and rendered.content_type == old.content_type
    key = old.key if same_bytes and old.key else regenerated_thumbnail_key(image_id, rendered)
    new = _Thumbnail(key, rendered.content_type, len(rendered.data), rendered.checksum, rendered.placeholder)
    if same_bytes and await storage.exists(key):
        return new, None  # unchanged: nothing to write
    # The same bytes again (an object lost from storage), or new ones under a key nobody was served.
    save = partial(storage.save_blocking, key, io.BytesIO(rendered.data), len(rendered.data), rendered.content_type)
    await anyio.to_thread.run_sync(save)
    return new, key


async def _update(
    connection: AsyncConnection, image_id: uuid.UUID, expected_key: str | None, new: _Thumbnail, recipe: str
) -> bool:
    result = await connection.execute(
        update(Image)
        .where(
            Image.id == image_id,
            Image.thumbnail_status == ThumbnailStatus.READY,
            Image.thumbnail_key.is_not_distinct_from(expected_key),
        )
        .values(
            thumbnail_key=new.key,
            thumbnail_content_type=new.content_type,
            thumbnail_size=new.size,
            thumbnail_checksum=new.checksum,
            placeholder=new.placeholder,
            thumbnail_recipe=recipe,
        )
    )
    return result.rowcount == 1


async def scrub(resources: JobResources, checksum: str) -> None:
    """Re-read the original with this checksum, and record whether it is missing or altered.

    Every stored object of the content is read through and hashed again (usually one: originals are
    stored once per content, ADR 0014; images from before that keep keys of their own). A problem is
    logged as a warning and kept in `integrity_findings`, one row per object, which is what the
    integrity metrics (a later issue) count; an object found whole again loses its row. A store that
    cannot be reached raises: that is no finding about the object.
    """
    async with read_session(resources.sessionmaker) as session:
        keys: Sequence[str] = list(await session.scalars(_KEYS_OF_CONTENT, {"checksum": checksum}))
    problems: dict[str, tuple[IntegrityProblem, str | None]] = {}
    for key in keys:
        actual = await stored_checksum(resources.storage, key)
        if actual is None:
            problems[key] = (IntegrityProblem.MISSING, None)
            logger.warning("scrub: the original %s (checksum %s) is missing", key, checksum)
        elif actual != checksum:
            problems[key] = (IntegrityProblem.MISMATCH, actual)
            logger.warning("scrub: the original %s should hash to %s but hashes to %s", key, checksum, actual)
    async with transaction(resources.sessionmaker) as connection:
        # Objects found whole, and those no image names any more, are no longer findings.
        await connection.execute(
            delete(IntegrityFinding).where(
                IntegrityFinding.checksum == checksum, IntegrityFinding.storage_key.not_in(list(problems))
            )
        )
        for key, (problem, actual) in problems.items():
            await connection.execute(_upsert_finding(connection, checksum, key, problem, actual))


async def stored_checksum(storage: StorageBackend, key: str) -> str | None:
    """SHA-256 hex of the object's bytes as the store returns them now; None if it does not hold the key."""
    digest = hashlib.sha256()
    try:
        chunks = await storage.open_range(key)
    except StoredObjectMissing:
        return None
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            # Hashed here: a chunk (256 KB) takes a fraction of a millisecond, less than a thread hop.
            digest.update(chunk)
    return digest.hexdigest()


def _upsert_finding(
    connection: AsyncConnection, checksum: str, key: str, problem: IntegrityProblem, actual: str | None
) -> Any:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(IntegrityFinding).values(
        checksum=checksum, storage_key=key, problem=problem, actual_checksum=actual, found_at=utc_now()
    )
    # Found again: the date it was first found stays, what is wrong now is recorded.
    return statement.on_conflict_do_update(
        index_elements=[IntegrityFinding.checksum, IntegrityFinding.storage_key],
        set_={"problem": statement.excluded.problem, "actual_checksum": statement.excluded.actual_checksum},
    )


_STATE = select(
    Image.id,
    Image.storage_key,
    Image.checksum,
    Image.thumbnail_status,
    Image.thumbnail_key,
    Image.thumbnail_content_type,
    Image.thumbnail_size,
    Image.thumbnail_checksum,
    Image.placeholder,
    Image.thumbnail_recipe,
).where(Image.id == bindparam("image_id"))
_CURRENT_SIBLING = (
    select(
        Image.thumbnail_key,
        Image.thumbnail_content_type,
        Image.thumbnail_size,
        Image.thumbnail_checksum,
        Image.placeholder,
    )
    .where(
        Image.storage_key == bindparam("storage_key"),
        Image.thumbnail_status == ThumbnailStatus.READY,
        Image.thumbnail_recipe == bindparam("recipe"),
        Image.thumbnail_key.is_not(None),
        Image.id != bindparam("image_id"),
    )
    .limit(1)
)
_KEYS_OF_CONTENT = select(Image.storage_key).where(Image.checksum == bindparam("checksum")).distinct()
