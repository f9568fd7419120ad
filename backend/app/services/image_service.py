"""Image rules: accept an upload, look images up, delete them."""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import BinaryIO

import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.database import after_commit, on_rollback
from app.errors import ImageNotFound
from app.models import Image
from app.schemas.upload import ReceivedUpload
from app.services.storage import StorageBackend
from app.utils.filenames import extension_for, sanitize_filename
from app.utils.image_validation import ImageInfo, inspect_image

logger = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 1024 * 1024


def _sha256(file: BinaryIO) -> str:
    file.seek(0)
    digest = hashlib.sha256()
    while chunk := file.read(HASH_CHUNK_BYTES):
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()


def _analyse(upload: ReceivedUpload, settings: Settings) -> tuple[ImageInfo, str]:
    info = inspect_image(
        upload.file,
        allowed_content_types=settings.allowed_content_types,
        max_pixels=settings.max_image_pixels,
        declared_content_type=upload.declared_content_type,
    )
    return info, _sha256(upload.file)


async def create_image(
    session: AsyncSession,
    storage: StorageBackend,
    settings: Settings,
    upload: ReceivedUpload,
    *,
    client_ip: str | None,
) -> Image:
    """Validate an upload, store its bytes and add its row (the caller's transaction commits)."""
    # Pillow and hashing are CPU work: off the event loop.
    info, checksum = await anyio.to_thread.run_sync(_analyse, upload, settings)
    image_id = uuid.uuid4()
    extension = extension_for(info.content_type)
    storage_key = f"{image_id}{extension}"
    await storage.save(storage_key, upload.file, upload.size, info.content_type)

    async def remove_orphan_blob() -> None:
        await storage.delete(storage_key)

    # The object store cannot join the transaction: if the row does not commit, the blob goes.
    on_rollback(session, remove_orphan_blob)
    image = Image(
        id=image_id,
        filename=sanitize_filename(upload.filename, fallback_extension=extension),
        storage_key=storage_key,
        content_type=info.content_type,
        file_size=upload.size,
        width=info.width,
        height=info.height,
        checksum=checksum,
        upload_ip=client_ip,
    )
    session.add(image)
    await session.flush()
    return image


async def get_image(session: AsyncSession, image_id: str) -> Image:
    """The image with this id; malformed and unknown ids alike are IMAGE_NOT_FOUND."""
    try:
        parsed = uuid.UUID(image_id)
    except ValueError:
        raise ImageNotFound(details={"id": image_id[:64]}) from None
    image = await session.get(Image, parsed)
    if image is None:
        raise ImageNotFound(details={"id": str(parsed)})
    return image


async def delete_image(session: AsyncSession, storage: StorageBackend, image: Image) -> None:
    """Remove the row; the stored bytes go once the deletion has committed."""
    storage_key = image.storage_key
    await session.delete(image)
    await session.flush()

    async def remove_blob() -> None:
        try:
            await storage.delete(storage_key)
        except Exception:
            # The row is gone, so the image is gone for every client; the blob is an orphan to sweep.
            logger.exception("image %s deleted but its object %s could not be removed", image.id, storage_key)

    after_commit(session, remove_blob)
