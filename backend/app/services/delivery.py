"""What serving a stored object needs, from the row or from cached metadata (no database read)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from app.errors import ThumbnailNotReady
from app.models import Image


@dataclass(frozen=True)
class StoredFile:
    """Where one stored object is and how to describe it over HTTP."""

    key: str
    size: int
    checksum: str
    content_type: str
    filename: str
    modified: datetime


def original_from_metadata(metadata: dict[str, Any]) -> StoredFile:
    return StoredFile(
        key=metadata["storage_key"],
        size=int(metadata["file_size"]),
        checksum=metadata["checksum"],
        content_type=metadata["content_type"],
        filename=metadata["filename"],
        modified=datetime.fromisoformat(metadata["created_at"]),
    )


def thumbnail_file(image: Image) -> StoredFile:
    """The ready thumbnail of `image`; THUMBNAIL_NOT_READY if the row does not describe one."""
    if not (image.thumbnail_key and image.thumbnail_content_type and image.thumbnail_checksum):
        raise ThumbnailNotReady()
    extension = PurePosixPath(image.thumbnail_key).suffix
    return StoredFile(
        key=image.thumbnail_key,
        size=image.thumbnail_size or 0,
        checksum=image.thumbnail_checksum,
        content_type=image.thumbnail_content_type,
        filename=f"{PurePosixPath(image.filename).stem}-thumbnail{extension}",
        modified=image.created_at,
    )
