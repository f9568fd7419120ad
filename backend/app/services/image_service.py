"""Image rules: look images up, list them, change and delete them (accepting uploads is `uploads`)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.database import after_commit
from app.errors import (
    DeleteTokenRequired,
    Forbidden,
    ImageNotFound,
    InvalidDeleteToken,
    Unauthorized,
    ValidationFailed,
)
from app.media.thumbnails import THUMBNAIL_CONTENT_TYPES, thumbnail_key
from app.models import Image, User, Visibility
from app.models.base import utc_now
from app.schemas.image import ImageRead, ImageUpdate
from app.services import image_access, usage
from app.services.cache import CacheStatus, Metadata, MetadataCache
from app.services.content_store import collect_garbage
from app.services.credentials import Principal
from app.services.read_routing import ReadRouter
from app.services.storage import StorageBackend
from app.services.tokens import delete_token_matches
from app.utils.cursors import InvalidCursor, decode_cursor, encode_cursor

logger = logging.getLogger(__name__)


def parse_image_id(image_id: str) -> uuid.UUID:
    """The id as a UUID; a malformed id names no image."""
    try:
        return uuid.UUID(image_id)
    except ValueError:
        raise ImageNotFound(details={"id": image_id[:64]}) from None


async def get_image(session: AsyncSession, image_id: str, *, for_update: bool = False) -> Image:
    """The image with this id; malformed, unknown and expired ids alike are IMAGE_NOT_FOUND.

    An expired image's row stays until the expiry sweep removes it; it is gone for every reader already.
    """
    parsed = parse_image_id(image_id)
    image = await session.get(Image, parsed, with_for_update=for_update)
    if image is None or image_access.is_expired(image):
        raise ImageNotFound(details={"id": str(parsed)})
    return image


async def get_image_metadata(
    reads: ReadRouter,
    cache: MetadataCache,
    image_id: str,
    *,
    variant_widths: Sequence[int] = (),
) -> tuple[Metadata, CacheStatus]:
    """Public metadata, from the cache when it has it (cache-aside), and whether it did.

    A hit touches no database at all. A miss reads the row where `reads` sends it (the replica when it
    has replayed every write acknowledged before the read began), so what it caches is never older
    than what the primary would have given.
    """
    parsed = parse_image_id(image_id)
    found = await cache.lookup(parsed)
    if found.metadata is not None:
        return found.metadata, found.status
    image = await reads.run(lambda session: get_image(session, image_id))
    # Where the original is stored travels with the cached metadata (never in the API's body).
    value = {**ImageRead.describe(image, variant_widths).model_dump(mode="json"), "storage_key": image.storage_key}
    if image.visibility == Visibility.PRIVATE:
        # Who may see it; such metadata is never cached (`cache.cacheable`), so no owner reaches Redis.
        value["owner_id"] = str(image.owner_id)
    if found.stamp is not None:
        # Not if a delete invalidated it meanwhile, nor while the thumbnail is pending (`cache.fill`).
        await cache.fill(parsed, value, found.stamp)
    return Metadata.of(value), found.status


def authorize_delete(image: Image, principal: Principal | None, delete_token: str | None) -> None:
    """Only the owner (logged in, or a key with `images:delete`) or the holder of an anonymous upload's
    delete token may delete."""
    if image.owner_id is not None:
        if image_access.is_private(image) and (principal is None or principal.user_id != image.owner_id):
            raise image_access.not_found(image)  # to anyone else a private image is not there at all
        if principal is None:
            raise Unauthorized("Log in as the image's owner to delete it.")
        if principal.user_id != image.owner_id:
            raise Forbidden("This image belongs to another account.")
        principal.require("images:delete")
        return
    if image.delete_token_hash is None:
        raise Forbidden("This image cannot be deleted.")
    if not delete_token:
        raise DeleteTokenRequired()
    if not delete_token_matches(delete_token, image.delete_token_hash):
        raise InvalidDeleteToken()


async def list_user_images(
    session: AsyncSession, user: User, *, limit: int, cursor: str | None
) -> tuple[list[Image], str | None]:
    """One page of the user's images, newest first, and the cursor of the next page (or None); expired
    ones are gone already, whether or not the sweep has removed them yet."""
    query = select(Image).where(
        Image.owner_id == user.id, or_(Image.expires_at.is_(None), Image.expires_at > utc_now())
    )
    if cursor:
        try:
            created_at, image_id = decode_cursor(cursor)
        except InvalidCursor:
            raise ValidationFailed(
                "The cursor is not valid; start again without it.",
                details={"errors": [{"loc": ["query", "cursor"], "msg": "Invalid cursor", "type": "value_error"}]},
            ) from None
        query = query.where(tuple_(Image.created_at, Image.id) < tuple_(created_at, image_id))
    rows = list(await session.scalars(query.order_by(Image.created_at.desc(), Image.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return page, next_cursor


def expiry_from(seconds: int, max_expiry_days: int) -> timedelta:
    """`expires_in` seconds as a lifetime, within the bounds an upload has (1 s to MAX_EXPIRY_DAYS)."""
    if not 1 <= seconds <= max_expiry_days * 86400:
        raise ValidationFailed.of_field("expires_in", f"expires_in is from 1 second to {max_expiry_days} days.")
    return timedelta(seconds=seconds)


async def update_image(
    session: AsyncSession,
    image: Image,
    changes: ImageUpdate,
    *,
    max_expiry_days: int,
    forget_cached: Callable[[uuid.UUID], Awaitable[None]],
) -> Image:
    """Change an image's visibility and/or expiry (`expires_in` seconds from now, null for never).

    Cached metadata says both, so it is dropped once the change has committed.
    """
    if changes.visibility is not None:
        image.visibility = Visibility(changes.visibility)
    if "expires_in" in changes.model_fields_set:
        seconds = changes.expires_in
        image.expires_at = None if seconds is None else utc_now() + expiry_from(seconds, max_expiry_days)
    await session.flush()
    image_id = image.id

    async def forget() -> None:
        await forget_now_and_again(forget_cached, image_id)

    after_commit(session, forget)
    return image


async def forget_now_and_again(forget_cached: Callable[[uuid.UUID], Awaitable[None]], image_id: uuid.UUID) -> None:
    """Invalidate now, and once more a little later.

    A fill racing the change cannot write the old metadata back (the cache's fill stamp, ADR 0019),
    but Redis replicates asynchronously: a cluster master that acknowledged the invalidation and died
    before passing it on leaves its replica, promoted, with the old entry for a whole TTL. The second
    invalidation, seconds later, reaches the new master.
    """
    await forget_cached(image_id)
    task = asyncio.create_task(_forget_again(forget_cached, image_id))
    _SECOND_INVALIDATIONS.add(task)
    task.add_done_callback(_SECOND_INVALIDATIONS.discard)


# Longer than a cluster's failover takes (about 2-3 s with cluster-node-timeout 1 s; the call is retried
# while Redis is skipped), short enough to matter little.
SECOND_INVALIDATION_DELAY_SECONDS = 2.0
_SECOND_INVALIDATIONS: set[asyncio.Task[None]] = set()  # referenced until done, so none is collected early


async def _forget_again(forget_cached: Callable[[uuid.UUID], Awaitable[None]], image_id: uuid.UUID) -> None:
    await asyncio.sleep(SECOND_INVALIDATION_DELAY_SECONDS)
    try:
        await forget_cached(image_id)
    except Exception:
        logger.exception("second invalidation of image %s failed", image_id)


@dataclass(frozen=True)
class RemovedImage:
    """What is left to collect once an image's row is gone: its objects, by content."""

    image_id: uuid.UUID
    checksum: str
    keys: tuple[str | None, ...]


async def remove_row(session: AsyncSession, image: Image) -> RemovedImage:
    """Delete the row and stop counting it against its owner, in the session's transaction; what it
    leaves is for `collect_removed` once that has committed."""
    image_id = image.id
    # The image's own thumbnail keys are deterministic: both candidates go, whatever the row said
    # when loaded (a job may finish between our read and our commit).
    keys = (
        image.storage_key,
        image.thumbnail_key,
        *(thumbnail_key(str(image_id), kind) for kind in THUMBNAIL_CONTENT_TYPES),
    )
    if image.owner_id is not None:
        await usage.release(session, image.owner_id, image.file_size)
    await session.delete(image)
    await session.flush()
    return RemovedImage(image_id, image.checksum, keys)


async def collect_removed(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: StorageBackend,
    removed: RemovedImage,
    forget_cached: Callable[[uuid.UUID], Awaitable[None]] | None,
) -> None:
    """After a removal committed: the cache entry goes, and the objects no other image uses.

    The original and a ready thumbnail may be shared with other images of the same content
    (ADR 0014): they go with the last row that names them.
    """
    if forget_cached is not None:
        await forget_now_and_again(forget_cached, removed.image_id)
    try:
        await collect_garbage(sessionmaker, storage, removed.checksum, removed.keys)
    except Exception:
        # The row is gone, so the image is gone for every client; an object left is an orphan.
        logger.exception("image %s deleted but its objects could not be collected", removed.image_id)


async def delete_image(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: StorageBackend,
    image: Image,
    *,
    forget_cached: Callable[[uuid.UUID], Awaitable[None]],
) -> None:
    """Remove the row; once that has committed, the cache entry goes, and the objects no other image uses."""
    removed = await remove_row(session, image)

    async def remove_objects() -> None:
        await collect_removed(sessionmaker, storage, removed, forget_cached)

    after_commit(session, remove_objects)
