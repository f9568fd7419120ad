"""Image rules: accept an upload, look images up, delete them."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, BinaryIO, Protocol

import anyio
from sqlalchemy import bindparam, exists, insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.database import after_commit, execute_alone
from app.errors import (
    DeleteTokenRequired,
    Forbidden,
    ImageNotFound,
    InvalidDeleteToken,
    Unauthorized,
    ValidationFailed,
)
from app.models import Image, ThumbnailStatus, User
from app.models.base import utc_now
from app.schemas.image import ImageRead
from app.schemas.upload import ReceivedUpload
from app.services.cache import CacheStatus, Metadata, MetadataCache
from app.services.storage import StorageBackend
from app.services.thumbnail_jobs import NewUpload
from app.services.thumbnail_render import thumbnail_key
from app.services.tokens import delete_token_matches, hash_delete_token, new_delete_token
from app.utils.cursors import InvalidCursor, decode_cursor, encode_cursor
from app.utils.filenames import extension_for, sanitize_filename
from app.utils.image_validation import ImageInfo, inspect_image
from app.utils.worker_threads import run_blocking

logger = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 1024 * 1024


class ThumbnailQueue(Protocol):
    def lease_for_new_upload(self) -> datetime | None: ...

    def enqueue(self, image_id: uuid.UUID, upload: NewUpload | None = None) -> None: ...


def original_key(image_id: uuid.UUID | str, content_type: str) -> str:
    """The storage key of an original: made from the id and the detected type, never from the client."""
    return f"{image_id}{extension_for(content_type)}"


def _sha256(file: BinaryIO) -> str:
    file.seek(0)
    digest = hashlib.sha256()
    while chunk := file.read(HASH_CHUNK_BYTES):
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()


@dataclass(frozen=True)
class _Stored:
    """An accepted upload, stored: what it is, its hash, its new id, key and delete token."""

    info: ImageInfo
    checksum: str
    image_id: uuid.UUID
    storage_key: str
    delete_token: str | None


def _accept_and_store(
    upload: ReceivedUpload, settings: Settings, storage: StorageBackend, *, anonymous: bool
) -> _Stored:
    """Validate and hash the upload, then store it: one worker-thread hop for the lot (blocking)."""
    info = inspect_image(
        upload.file,
        allowed_content_types=settings.allowed_content_types,
        max_pixels=settings.max_image_pixels,
        declared_content_type=upload.declared_content_type,
        # A JPEG is decoded at the thumbnail's scale and handed to the job: one decode, not two.
        thumbnail_side=settings.thumbnail_size,
    )
    checksum = _sha256(upload.file)
    # The id and token are drawn here too: reading the OS's randomness releases the GIL, and on the
    # event loop taking it back means waiting for busy worker threads.
    image_id = uuid.uuid4()
    storage_key = original_key(image_id, info.content_type)
    storage.save_blocking(storage_key, upload.file, upload.size, info.content_type)
    return _Stored(
        info=info,
        checksum=checksum,
        image_id=image_id,
        storage_key=storage_key,
        delete_token=new_delete_token() if anonymous else None,
    )


async def create_image(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: StorageBackend,
    settings: Settings,
    upload: ReceivedUpload,
    *,
    owner_id: uuid.UUID | None,
    client_ip: str | None,
    thumbnails: ThumbnailQueue,
) -> tuple[Image, str | None]:
    """Validate an upload, store its bytes and add its row; UNAUTHORIZED if the owner's account is gone.

    Returns the image (not bound to a session) and, for an anonymous upload, its delete token: shown
    once, stored hashed. The row is one INSERT in autocommit mode (ADR 0002): once it returns, the
    image exists for every client.
    """
    # Pillow, hashing and the blocking write are off the event loop, in one thread hop.
    stored = await run_blocking(partial(_accept_and_store, upload, settings, storage, anonymous=owner_id is None))
    info, image_id, storage_key, delete_token = stored.info, stored.image_id, stored.storage_key, stored.delete_token
    # Claimed for this process's thumbnail job in the same INSERT, when this process makes them.
    lease = thumbnails.lease_for_new_upload()
    row = {
        "id": image_id,
        "filename": sanitize_filename(upload.filename, fallback_extension=extension_for(info.content_type)),
        "storage_key": storage_key,
        "content_type": info.content_type,
        "file_size": upload.size,
        "width": info.width,
        "height": info.height,
        "checksum": stored.checksum,
        "upload_ip": client_ip,
        "created_at": utc_now(),
        "owner_id": owner_id,
        "delete_token_hash": None if delete_token is None else hash_delete_token(delete_token),
        "thumbnail_status": ThumbnailStatus.PENDING,
        "thumbnail_attempts": 0 if lease is None else 1,
        "thumbnail_lease_until": lease,
    }
    try:
        inserted = await _insert_row(sessionmaker, row)
    except BaseException:
        # The object store cannot join the database's transaction: a row that was not written takes
        # its blob with it (also when the request is cancelled meanwhile). A failure can also strike
        # after the server wrote the row (a lost connection, a cancellation mid-round-trip), so the
        # blob goes only once the row is known to be absent.
        with anyio.CancelScope(shield=True):
            await _remove_orphan_unless_recorded(sessionmaker, storage, image_id, storage_key)
        raise
    if not inserted:
        with anyio.CancelScope(shield=True):
            await _remove_orphan(storage, storage_key)
        raise Unauthorized("The account for this token no longer exists.")
    # Only now: a job must never look for a row that is not there yet.
    thumbnails.enqueue(image_id, NewUpload(storage_key=storage_key, decoded=info.decoded, claimed=lease is not None))
    return Image(**row), delete_token


async def _insert_row(sessionmaker: async_sessionmaker[AsyncSession], row: dict[str, Any]) -> bool:
    """Write the new image's row; False (nothing written) when it names an owner who is not an active user."""
    if row["owner_id"] is None:
        inserted, _ = await execute_alone(sessionmaker, _INSERT_ANONYMOUS, row)
        return inserted == 1
    # The owner is checked by the INSERT itself: no separate lookup, and no account deleted or
    # disabled between a lookup and the write can own a new image.
    try:
        inserted, _ = await execute_alone(sessionmaker, _INSERT_OWNED, row)
    except IntegrityError:
        return False  # the account was deleted between the EXISTS and the foreign key's own check
    return inserted == 1


async def _remove_orphan_unless_recorded(
    sessionmaker: async_sessionmaker[AsyncSession], storage: StorageBackend, image_id: uuid.UUID, storage_key: str
) -> None:
    """After a failed INSERT: remove the blob unless its row was written after all.

    When the database cannot even be asked (it is down), the row is taken as not written, as the
    request reports: a blob kept for a row that never came would be an orphan nobody knows about.
    """
    try:
        _, row = await execute_alone(sessionmaker, _ROW_EXISTS, {"image_id": image_id})
    except Exception:
        row = None
    if row is not None:
        logger.warning("upload %s failed after its row was written; its object %s is kept", image_id, storage_key)
        return
    await _remove_orphan(storage, storage_key)


async def _remove_orphan(storage: StorageBackend, storage_key: str) -> None:
    try:
        await storage.delete(storage_key)
    except Exception:
        logger.exception("the object %s of an upload that was not recorded could not be removed", storage_key)


def parse_image_id(image_id: str) -> uuid.UUID:
    """The id as a UUID; a malformed id names no image."""
    try:
        return uuid.UUID(image_id)
    except ValueError:
        raise ImageNotFound(details={"id": image_id[:64]}) from None


async def get_image(session: AsyncSession, image_id: str) -> Image:
    """The image with this id; malformed and unknown ids alike are IMAGE_NOT_FOUND."""
    parsed = parse_image_id(image_id)
    image = await session.get(Image, parsed)
    if image is None:
        raise ImageNotFound(details={"id": str(parsed)})
    return image


async def get_image_metadata(
    sessionmaker: async_sessionmaker[AsyncSession], cache: MetadataCache, image_id: str
) -> tuple[Metadata, CacheStatus]:
    """Public metadata, from the cache when it has it (cache-aside), and whether it did.

    A hit touches no database at all: the session is opened only on a miss (a read; nothing commits).
    """
    parsed = parse_image_id(image_id)
    cached, status = await cache.get(parsed)
    if cached is not None:
        return cached, status
    async with sessionmaker() as session:
        value = ImageRead.model_validate(await get_image(session, image_id)).model_dump(mode="json")
    if status == "MISS":
        await cache.set(parsed, value)  # not while the thumbnail is pending (`cache.cacheable`)
    return Metadata.of(value), status


def authorize_delete(image: Image, user: User | None, delete_token: str | None) -> None:
    """Only the owner (logged in) or the holder of an anonymous upload's delete token may delete."""
    if image.owner_id is not None:
        if user is None:
            raise Unauthorized("Log in as the image's owner to delete it.")
        if user.id != image.owner_id:
            raise Forbidden("This image belongs to another account.")
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
    """One page of the user's images, newest first, and the cursor of the next page (or None)."""
    query = select(Image).where(Image.owner_id == user.id)
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


async def delete_image(
    session: AsyncSession,
    storage: StorageBackend,
    image: Image,
    *,
    forget_cached: Callable[[uuid.UUID], Awaitable[None]],
) -> None:
    """Remove the row; the original, every thumbnail and the cache entry go once that has committed."""
    image_id = image.id
    # Thumbnail keys are deterministic: remove both candidates, whatever the row said when loaded
    # (a job may finish between our read and our commit).
    keys = [image.storage_key, *(thumbnail_key(str(image_id), kind) for kind in ("image/jpeg", "image/png"))]
    await session.delete(image)
    await session.flush()

    async def remove_blobs() -> None:
        await forget_cached(image_id)
        for key in keys:
            try:
                await storage.delete(key)
            except Exception:
                # The row is gone, so the image is gone for every client; the blob is an orphan to sweep.
                logger.exception("image %s deleted but its object %s could not be removed", image_id, key)

    after_commit(session, remove_blobs)


# The columns an upload writes (the keys of `create_image`'s row), and its two INSERTs, built once
# (building a statement costs about as much as running it). Anonymous: plain VALUES. Owned: INSERT ...
# SELECT, which writes nothing unless the owner is an active account.
_ROW_COLUMNS = (
    "id",
    "filename",
    "storage_key",
    "content_type",
    "file_size",
    "width",
    "height",
    "checksum",
    "upload_ip",
    "created_at",
    "owner_id",
    "delete_token_hash",
    "thumbnail_status",
    "thumbnail_attempts",
    "thumbnail_lease_until",
)
_ROW_EXISTS = select(Image.id).where(Image.id == bindparam("image_id"))
_ROW_PARAMETERS = {column: bindparam(column, type_=Image.__table__.c[column].type) for column in _ROW_COLUMNS}
_INSERT_ANONYMOUS = insert(Image).values(_ROW_PARAMETERS)
_INSERT_OWNED = insert(Image).from_select(
    _ROW_COLUMNS,
    select(*_ROW_PARAMETERS.values()).where(
        exists().where(User.id == _ROW_PARAMETERS["owner_id"], User.is_active.is_(True))
    ),
)
