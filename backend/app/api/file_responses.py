"""Serving stored bytes over HTTP: caching validators, ranges and strict headers."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from email.utils import format_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from app.config import Settings
from app.errors import ImageNotFound
from app.services.delivery import StoredFile
from app.services.hot_files import HotFiles
from app.services.image_access import PRIVATE_NO_STORE, PUBLIC_FOREVER, Caching
from app.services.storage import StorageBackend, StoredObjectMissing
from app.utils.filenames import content_disposition
from app.utils.http_ranges import etag_matches, parse_range

logger = logging.getLogger(__name__)

IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
# Served files are data, never documents: nothing in them may run or be sniffed into HTML.
FILE_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    # Other sites may embed direct links, also from pages that require CORP.
    "Cross-Origin-Resource-Policy": "cross-origin",
}


# Request headers that can make the answer anything but the whole file.
CONDITIONAL_REQUEST_HEADERS = frozenset({b"range", b"if-none-match", b"if-range"})
# The same headers as OpenAPI parameters (`openapi_extra`) of the routes that answer with `stored_file_response`.
CONDITIONAL_REQUEST_PARAMETERS: dict[str, Any] = {
    "parameters": [
        {
            "name": "Range",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "One byte range (`bytes=0-1023`, `bytes=-500`): 206, or 416 outside the file; "
            "other forms are ignored.",
        },
        {
            "name": "If-Range",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Honour `Range` only while the file still has this ETag.",
        },
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "ETags from earlier answers: 304 when one of them (or `*`) matches.",
        },
    ]
}


@lru_cache(maxsize=4096)
def _validator_headers(stored: StoredFile) -> dict[str, str]:
    """What every answer about this file carries, 304 included (a stored file never changes: memoised)."""
    return {
        "ETag": f'"{stored.checksum}"',
        "Cache-Control": IMMUTABLE_CACHE,
        "Last-Modified": format_datetime(stored.modified, usegmt=True),
        "Accept-Ranges": "bytes",
        **FILE_SECURITY_HEADERS,
    }


@lru_cache(maxsize=4096)
def _body_headers(stored: StoredFile) -> dict[str, str]:
    """The validators plus what describes the bytes themselves."""
    return {
        **_validator_headers(stored),
        "Content-Type": stored.content_type,
        "Content-Disposition": content_disposition(stored.filename),
    }


def _with_caching(headers: dict[str, str], caching: Caching) -> dict[str, str]:
    """The memoised headers, or a copy saying how long this image's answers may be kept (ADR 0017)."""
    if caching.header is None:
        return headers
    return {**headers, "Cache-Control": caching.header}


def _accel_redirect(stored: StoredFile, settings: Settings, caching: Caching) -> Response:
    """Let the reverse proxy send the file (and answer Range) from local storage; our headers stay."""
    headers = {
        **_with_caching(_body_headers(stored), caching),
        "X-Accel-Redirect": settings.accel_redirect_prefix + quote(stored.key),
    }
    return Response(status_code=200, headers=headers)


def whole_file_response(
    request_headers: list[tuple[bytes, bytes]],
    stored: StoredFile,
    settings: Settings,
    hot_files: HotFiles,
    caching: Caching = PUBLIC_FOREVER,
) -> Response | None:
    """The answer to a plain GET (no Range or validators) when it needs no I/O at all, else None.

    That is the proxy's redirect, or a file held in memory: the common case of a direct link, which
    `NearCacheHitMiddleware` answers before routing with exactly what `stored_file_response` gives.
    """
    if any(name in CONDITIONAL_REQUEST_HEADERS for name, _ in request_headers):
        return None
    if settings.file_delivery == "accel-redirect":
        return _accel_redirect(stored, settings, caching)
    if settings.file_delivery != "stream":
        return None
    data = hot_files.get(stored.key, stored.checksum)
    if data is None:
        return None
    headers = {**_with_caching(_body_headers(stored), caching), "Content-Length": str(stored.size)}
    return Response(data, status_code=200, headers=headers, media_type=stored.content_type)


async def stored_file_response(
    request: Request, storage: StorageBackend, stored: StoredFile, caching: Caching = PUBLIC_FOREVER
) -> Response:
    """Stored bytes for GET/HEAD with ETag, 304, single ranges and strict headers; `caching` says how long
    they may be kept (immutable unless the image is private or ends)."""
    etag = f'"{stored.checksum}"'
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=_with_caching(_validator_headers(stored), caching))

    settings: Settings = request.app.state.settings
    if settings.file_delivery == "accel-redirect":
        return _accel_redirect(stored, settings, caching)
    if settings.file_delivery == "presigned-redirect":
        redirect = await _presigned_redirect(storage, stored, settings, caching)
        if redirect is not None:
            return redirect

    size = stored.size
    if_range = request.headers.get("if-range")
    byte_range = parse_range(request.headers.get("range"), size) if if_range in (None, etag) else None
    headers = _with_caching(_body_headers(stored), caching).copy()
    status = 200
    start, end = 0, size - 1
    if byte_range is not None:
        status = 206
        start, end = byte_range.start, byte_range.end
        headers["Content-Range"] = byte_range.content_range(size)
    headers["Content-Length"] = str(end - start + 1)

    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    whole = await _whole_file(request.app.state.hot_files, storage, stored)
    if whole is not None:
        body = whole if (start, end) == (0, size - 1) else whole[start : end + 1]
        return Response(body, status_code=status, headers=headers, media_type=stored.content_type)
    try:
        chunks = await storage.open_range(stored.key, start, end)
    except StoredObjectMissing:
        raise _missing(stored) from None
    first = await anext(chunks, b"")
    if len(first) >= end - start + 1:
        # Backends read the first MiB when opening: most images are whole already, and one body
        # costs less than a streaming response (no disconnect-listener task, one send).
        await chunks.aclose()
        return Response(first, status_code=status, headers=headers, media_type=stored.content_type)
    return StreamingResponse(_chain(first, chunks), status_code=status, headers=headers, media_type=stored.content_type)


async def _presigned_redirect(
    storage: StorageBackend, stored: StoredFile, settings: Settings, caching: Caching
) -> Response | None:
    """A redirect to a short-lived URL of the object store, never valid past the image (or its link)."""
    lifetime = settings.presigned_url_expire_seconds
    if caching.seconds_left is not None:
        lifetime = max(1, min(lifetime, caching.seconds_left))
    url = await storage.presigned_get_url(
        stored.key,
        lifetime,
        {
            "response-content-type": stored.content_type,
            "response-content-disposition": content_disposition(stored.filename),
            "response-cache-control": caching.header or IMMUTABLE_CACHE,
        },
    )
    if url is None:
        return None
    # Browsers may reuse the redirect while the URL is still valid, with a safety margin; a private
    # image's redirect is a credential to its bytes, kept by nobody.
    cache_control = PRIVATE_NO_STORE if caching.private else f"private, max-age={max(0, lifetime // 2)}"
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": cache_control})


async def _whole_file(hot_files: HotFiles, storage: StorageBackend, stored: StoredFile) -> bytes | None:
    """A small file from memory, or read whole and kept there; None for a file to stream."""
    data = hot_files.get(stored.key, stored.checksum)
    if data is not None or not hot_files.holds(stored.size):
        return data
    try:
        data = await storage.read_all(stored.key)
    except StoredObjectMissing:
        raise _missing(stored) from None
    if len(data) != stored.size:
        return None  # not what the row describes: streamed as it is, never kept
    hot_files.put(stored.key, stored.checksum, data)
    return data


def _missing(stored: StoredFile) -> ImageNotFound:
    # A row (or cached metadata) whose object is gone: deleted just now, or lost. Not a 500.
    logger.warning("stored object %s is missing", stored.key)
    return ImageNotFound()


async def _chain(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()
