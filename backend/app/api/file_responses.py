"""Serving stored bytes over HTTP: caching validators, ranges and strict headers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import PurePosixPath

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from app.errors import ThumbnailNotReady
from app.models import Image
from app.services.storage import StorageBackend
from app.utils.filenames import content_disposition
from app.utils.http_ranges import etag_matches, parse_range

IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
# Served files are data, never documents: nothing in them may run or be sniffed into HTML.
FILE_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    # Other sites may embed direct links, also from pages that require CORP.
    "Cross-Origin-Resource-Policy": "cross-origin",
}


@dataclass(frozen=True)
class StoredFile:
    """What serving one stored object needs: where it is and how to describe it."""

    key: str
    size: int
    checksum: str
    content_type: str
    filename: str
    modified: datetime


def original_file(image: Image) -> StoredFile:
    return StoredFile(
        key=image.storage_key,
        size=image.file_size,
        checksum=image.checksum,
        content_type=image.content_type,
        filename=image.filename,
        modified=image.created_at,
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


async def stored_file_response(request: Request, storage: StorageBackend, stored: StoredFile) -> Response:
    """Stored bytes for GET/HEAD with ETag, 304, single ranges and strict headers."""
    etag = f'"{stored.checksum}"'
    headers = {
        "ETag": etag,
        "Cache-Control": IMMUTABLE_CACHE,
        "Last-Modified": format_datetime(stored.modified, usegmt=True),
        "Accept-Ranges": "bytes",
        **FILE_SECURITY_HEADERS,
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)

    size = stored.size
    if_range = request.headers.get("if-range")
    byte_range = parse_range(request.headers.get("range"), size) if if_range in (None, etag) else None
    headers["Content-Type"] = stored.content_type
    headers["Content-Disposition"] = content_disposition(stored.filename)
    status = 200
    start, end = 0, size - 1
    if byte_range is not None:
        status = 206
        start, end = byte_range.start, byte_range.end
        headers["Content-Range"] = byte_range.content_range(size)
    headers["Content-Length"] = str(end - start + 1)

    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    chunks = await storage.open_range(stored.key, start, end)
    return StreamingResponse(chunks, status_code=status, headers=headers, media_type=stored.content_type)
