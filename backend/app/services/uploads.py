"""Accepting an upload: check it, strip it, and store its content once, however often it is uploaded.

The stages (ADR 0005, 0013, 0014): in a worker thread, everything that needs no decoding (signature,
declared type, header limits, metadata stripping, the SHA-256 of the bytes to store). Content that is
stored already then only needs its row: no decode, no second write, no second thumbnail. New content
is decoded in full (every frame), stored under its content key, and gets its row in the same locked
transaction (`content_store`), so a delete racing the upload can never take the bytes from under it.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol

import anyio
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from app.config import Settings
from app.database import execute_alone, transaction
from app.errors import Unauthorized
from app.media.formats import EXTENSIONS
from app.media.thumbnail_plan import DecodedFrame
from app.media.validation import Limits, PreparedUpload, decode_upload, prepare_upload
from app.models import Image, ThumbnailStatus, User, Visibility
from app.models.base import utc_now
from app.observability.metrics import count_accepted_upload
from app.observability.stages import stage
from app.schemas.upload import ReceivedUpload
from app.services import usage
from app.services.content_store import collect_garbage, lock_content, original_key
from app.services.credentials import Uploader
from app.services.storage import StorageBackend
from app.services.thumbnail_jobs import NewUpload
from app.services.tokens import hash_delete_token, new_delete_token
from app.utils.filenames import sanitize_filename
from app.utils.worker_threads import run_blocking

logger = logging.getLogger(__name__)


class ThumbnailQueue(Protocol):
    """Where an upload's thumbnail job goes: this process's jobs, or the job queue (app.jobs)."""

    def lease_for_new_upload(self) -> datetime | None: ...

    async def submit(self, image_id: uuid.UUID, upload: NewUpload | None = None) -> None: ...


def upload_limits(settings: Settings) -> Limits:
    """What one upload may cost to decode, from the settings."""
    return Limits(
        max_pixels=settings.max_image_pixels,
        max_frames=settings.max_frames,
        max_animation_pixels=settings.max_animation_pixels,
    )


@dataclass(frozen=True)
class UploadOptions:
    """What the uploader asked for besides the file (checked by the caller: `upload_options`)."""

    visibility: Visibility = Visibility.UNLISTED
    expires_at: datetime | None = None


@dataclass(frozen=True)
class _Prepared:
    """An upload checked short of decoding, with its new id and (anonymous uploads) delete token."""

    upload: PreparedUpload
    image_id: uuid.UUID
    delete_token: str | None


def _prepare(upload: ReceivedUpload, settings: Settings, *, anonymous: bool) -> _Prepared:
    """The worker thread's first hop: every check that needs no decoding, stripping and hashing (blocking)."""
    prepared = prepare_upload(
        upload.file,
        allowed_content_types=settings.allowed_content_types,
        declared_content_type=upload.declared_content_type,
        limits=upload_limits(settings),
        strip=settings.strip_metadata,
    )
    # The id and token are drawn here too: reading the OS's randomness releases the GIL, and on the
    # event loop taking it back means waiting for busy worker threads.
    return _Prepared(prepared, uuid.uuid4(), new_delete_token() if anonymous else None)


async def create_image(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: StorageBackend,
    settings: Settings,
    upload: ReceivedUpload,
    *,
    owner: Uploader | None,
    client_ip: str | None,
    thumbnails: ThumbnailQueue,
    options: UploadOptions = UploadOptions(),
) -> tuple[Image, str | None]:
    """Validate an upload, store its content once and add its row; UNAUTHORIZED if the owner's account is
    gone, QUOTA_EXCEEDED if the owner's quota has no room for it.

    Returns the image (not bound to a session) and, for an anonymous upload, its delete token: shown
    once, stored hashed. Once this returns, the image exists for every client.
    """
    ready = await run_blocking(partial(_prepare, upload, settings, anonymous=owner is None))
    prepared, delete_token = ready.upload, ready.delete_token
    row = _new_row(
        ready, upload, owner_id=None if owner is None else owner.user_id, client_ip=client_ip, options=options
    )
    token_version = None if owner is None else owner.token_version

    inserted = None
    if await _content_stored(sessionmaker, row["storage_key"]):
        # A duplicate: its bytes and (usually) its thumbnail exist already; nothing needs decoding.
        inserted = await _insert_row(sessionmaker, storage, settings, row, token_version, store=None)
    duplicate = inserted is not None
    decoded: DecodedFrame | None = None
    if inserted is None:
        decoded = await run_blocking(partial(_decoded, prepared, settings))
        # Claimed for this process's thumbnail job in the same INSERT, when this process makes them.
        lease = thumbnails.lease_for_new_upload()
        row.update(thumbnail_lease_until=lease, thumbnail_attempts=0 if lease is None else 1)
        data, content_type = prepared.data, prepared.content_type
        store = partial(_store_original, storage, row["storage_key"], data, content_type)
        inserted = await _insert_row(sessionmaker, storage, settings, row, token_version, store=store)
        if inserted is None:  # with a store to run, the row is written or an error is raised
            raise RuntimeError("the upload's row was not written")

    count_accepted_upload(duplicate=duplicate, content_type=row["content_type"], size=row["file_size"])
    if inserted["thumbnail_status"] == ThumbnailStatus.PENDING:
        # Only now: a job must never look for a row that is not there yet.
        claimed = inserted["thumbnail_lease_until"] is not None
        handoff = NewUpload(storage_key=row["storage_key"], checksum=row["checksum"], decoded=decoded, claimed=claimed)
        # Awaited before the 201: once a client has its answer, the job is queued (with JOB_QUEUE=postgres,
        # durably), so killing this process right after cannot delay the thumbnail past a sweep.
        await thumbnails.submit(row["id"], handoff)
    return Image(**inserted), delete_token


def _decoded(prepared: PreparedUpload, settings: Settings) -> DecodedFrame:
    """Decode the whole picture, as validation must (a worker thread's hop)."""
    with stage("validate"):
        return decode_upload(prepared, limits=upload_limits(settings), thumbnail_side=settings.thumbnail_size)


def _store_original(storage: StorageBackend, key: str, data: bytes, content_type: str) -> None:
    with stage("store"):
        storage.save_blocking(key, io.BytesIO(data), len(data), content_type)


def _new_row(
    ready: _Prepared,
    upload: ReceivedUpload,
    *,
    owner_id: uuid.UUID | None,
    client_ip: str | None,
    options: UploadOptions,
) -> dict[str, Any]:
    prepared = ready.upload
    return {
        "id": ready.image_id,
        "filename": sanitize_filename(upload.filename, fallback_extension=EXTENSIONS[prepared.content_type]),
        "storage_key": original_key(prepared.checksum, prepared.content_type),
        "content_type": prepared.content_type,
        "file_size": len(prepared.data),
        "width": prepared.width,
        "height": prepared.height,
        "checksum": prepared.checksum,
        "metadata_stripped": prepared.stripped,
        "upload_ip": client_ip,
        "created_at": utc_now(),
        "owner_id": owner_id,
        "delete_token_hash": None if ready.delete_token is None else hash_delete_token(ready.delete_token),
        "visibility": options.visibility,
        "expires_at": options.expires_at,
        **_PENDING_THUMBNAIL,
    }


async def _content_stored(sessionmaker: async_sessionmaker[AsyncSession], storage_key: str) -> bool:
    """Whether a row names this content already (a hint taken without the lock: `_insert_row` checks again)."""
    _, row = await execute_alone(sessionmaker, _ANY_ROW_NAMING, {"storage_key": storage_key})
    return row is not None


async def _insert_row(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: StorageBackend,
    settings: Settings,
    row: dict[str, Any],
    token_version: int | None,
    *,
    store: Callable[[], None] | None,
) -> dict[str, Any] | None:
    """Write the image's row under its content's lock; the values written, or None when nothing was.

    If a row names the content already, the new row shares its object and its thumbnail. Otherwise
    `store` (blocking) writes the original first, still under the lock; without one, nothing is
    written and None says so (the content went away since `_content_stored` saw it).
    """
    stored = False
    try:
        async with transaction(sessionmaker) as connection:
            await lock_content(connection, row["checksum"])
            sibling = (await connection.execute(_SIBLING, {"storage_key": row["storage_key"]})).first()
            if sibling is not None:
                values = {**row, **_shared_thumbnail(sibling._mapping)}
            elif store is None:
                return None
            else:
                # Marked before the write: a write cut short still leaves nothing behind.
                stored = True
                await run_blocking(store)
                values = row
            if row["owner_id"] is None:
                await connection.execute(_INSERT, values)
            else:
                # Last, so the account's row is locked only for the INSERT and the commit.
                await _insert_counted(connection, values, settings, token_version)
        return values
    except BaseException as error:
        if stored:
            # The object store cannot join the transaction: an object this upload stored and no row
            # names goes again (also when the request is cancelled meanwhile). Should the row have been
            # written after all (a commit whose answer was lost), the row keeps it.
            with anyio.CancelScope(shield=True):
                await _remove_unnamed(sessionmaker, storage, row)
        if isinstance(error, IntegrityError) and row["owner_id"] is not None:
            # The account was deleted between the INSERT's EXISTS and the foreign key's own check.
            raise Unauthorized("The account for this token no longer exists.") from None
        raise


async def _insert_counted(
    connection: AsyncConnection, values: dict[str, Any], settings: Settings, token_version: int | None
) -> None:
    """The INSERT of an owned row, counted against its owner; UNAUTHORIZED or QUOTA_EXCEEDED when it cannot be.

    The count is also the owner check: no account deleted or disabled (nor a token ended by a password
    change) between a lookup and the write can own a new image. On PostgreSQL both are one statement
    (the UPDATE a CTE of the INSERT): one round trip fewer per upload. SQLite runs them one by one.
    """
    reservation = {
        "owner_id": values["owner_id"],
        "file_size": values["file_size"],
        **usage.reservation_parameters(settings, token_version),
    }
    if connection.dialect.name == "postgresql":
        counted = {**reservation, **{_COUNTED_NAMES[name]: value for name, value in values.items()}}
        if (await connection.execute(_INSERT_COUNTED, counted)).rowcount == 1:
            return
    elif (await connection.execute(usage.RESERVE, reservation)).rowcount == 1:
        await connection.execute(_INSERT, values)
        return
    owner = (await connection.execute(_OWNER_USAGE, {"owner_id": values["owner_id"]})).first()
    if owner is None or not owner.is_active:
        raise Unauthorized("The account for this token no longer exists.")
    if token_version is not None and owner.token_version != token_version:
        raise Unauthorized("This session has ended (the password was changed); log in again.")
    raise usage.quota_error(owner.used_bytes, owner.used_images, values["file_size"], settings)


async def _remove_unnamed(
    sessionmaker: async_sessionmaker[AsyncSession], storage: StorageBackend, row: dict[str, Any]
) -> None:
    try:
        await collect_garbage(sessionmaker, storage, row["checksum"], [row["storage_key"]])
    except Exception:
        # The database or the store is down: the object may be an orphan; a later upload of the same
        # content reuses it, and nothing serves it meanwhile.
        logger.exception("upload %s failed and its object %s could not be checked", row["id"], row["storage_key"])


def _shared_thumbnail(sibling: Any) -> dict[str, Any]:
    """The thumbnail state a new row takes over from a row with the same content."""
    if sibling["thumbnail_status"] == ThumbnailStatus.PENDING:
        # Its job is under way; this row's own job takes the ready thumbnail over, or renders one.
        return dict(_PENDING_THUMBNAIL)
    return {
        **_PENDING_THUMBNAIL,
        **{name: sibling[name] for name in _SHARED_THUMBNAIL_COLUMNS},
    }


_PENDING_THUMBNAIL: dict[str, Any] = {
    "thumbnail_status": ThumbnailStatus.PENDING,
    "thumbnail_key": None,
    "thumbnail_content_type": None,
    "thumbnail_size": None,
    "thumbnail_checksum": None,
    "thumbnail_error": None,
    "thumbnail_attempts": 0,
    "thumbnail_lease_until": None,
    "placeholder": None,
    "thumbnail_recipe": None,
}
_SHARED_THUMBNAIL_COLUMNS = (
    "thumbnail_status",
    "thumbnail_key",
    "thumbnail_content_type",
    "thumbnail_size",
    "thumbnail_checksum",
    "thumbnail_error",
    "placeholder",
    "thumbnail_recipe",
)

# The columns an upload writes (the keys of `_new_row`), and its INSERT, built once (building a
# statement costs about as much as running it).
_ROW_COLUMNS = (
    "id",
    "filename",
    "storage_key",
    "content_type",
    "file_size",
    "width",
    "height",
    "checksum",
    "metadata_stripped",
    "upload_ip",
    "created_at",
    "owner_id",
    "delete_token_hash",
    "visibility",
    "expires_at",
    *_PENDING_THUMBNAIL,
)
_ROW_PARAMETERS = {column: bindparam(column, type_=Image.__table__.c[column].type) for column in _ROW_COLUMNS}
_INSERT = insert(Image).values(_ROW_PARAMETERS)
# The same row, written only if its owner's count could take it: `usage.RESERVE` as a CTE (PostgreSQL). The
# row's parameters are renamed: parameters named after the accounts' columns (`id`, `created_at`) would be
# taken for values of the UPDATE inside.
_COUNTED_NAMES = {column: f"row_{column}" for column in _ROW_COLUMNS}
_COUNTED = usage.RESERVE.returning(User.id).cte("counted")
_INSERT_COUNTED = insert(Image).from_select(
    _ROW_COLUMNS,
    select(
        *(bindparam(_COUNTED_NAMES[column], type_=Image.__table__.c[column].type) for column in _ROW_COLUMNS)
    ).select_from(_COUNTED),
)
_OWNER_USAGE = select(User.is_active, User.token_version, User.used_bytes, User.used_images).where(
    User.id == bindparam("owner_id")
)
_ANY_ROW_NAMING = select(Image.id).where(Image.storage_key == bindparam("storage_key")).limit(1)
# The row whose thumbnail a newcomer shares: a ready one first ("ready" > "pending" > "failed"), read
# from the (storage_key, thumbnail_status) index without sorting however many copies there are.
_SIBLING = (
    select(*(Image.__table__.c[name] for name in _SHARED_THUMBNAIL_COLUMNS))
    .where(Image.storage_key == bindparam("storage_key"))
    .order_by(Image.thumbnail_status.desc())
    .limit(1)
)
