"""Reading an upload's multipart body as a stream, within the size limit.

FastAPI's `UploadFile` parameter would make Starlette read the whole body before the handler
runs. Here the body is fed through Starlette's streaming multipart parser (python-multipart)
behind a counter: an oversized body is refused from its Content-Length without reading it, or
as soon as the bytes received pass the limit. The file part spools to disk above 1 MiB.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from app.api.deps import client_ip
from app.config import Settings
from app.errors import FileTooLarge, InvalidRequest, Unauthorized, UploadTimeout, ValidationFailed
from app.models import Image, Visibility
from app.models.base import utc_now
from app.schemas.upload import ReceivedUpload
from app.services import image_service, uploads
from app.services.credentials import Uploader
from app.services.storage import StorageBackend
from app.services.uploads import ThumbnailQueue, UploadOptions
from app.utils.durations import parse_duration

FILE_FIELD = "file"
VISIBILITY_FIELD = "visibility"
EXPIRES_FIELD = "expires_in"
# Room for the multipart framing and a few small text fields around the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024

# How the endpoint's body looks in OpenAPI, since it is not declared as a FastAPI parameter.
UPLOAD_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [FILE_FIELD],
                "properties": {
                    FILE_FIELD: {
                        "type": "string",
                        "format": "binary",
                        "description": "A JPEG, PNG, WebP, GIF, AVIF or HEIC/HEIF image.",
                    },
                    VISIBILITY_FIELD: {
                        "type": "string",
                        "enum": [visibility.value for visibility in Visibility],
                        "default": "unlisted",
                        "description": "`unlisted`: anyone with the link. `private`: only you, and the signed "
                        "links you share (needs a login or an API key).",
                    },
                    EXPIRES_FIELD: {
                        "type": "string",
                        "description": "Delete the image after this long: seconds, or `30m`, `12h`, `7d`, `2w`; "
                        "at most MAX_EXPIRY_DAYS (365 by default).",
                    },
                },
            }
        }
    },
}


def _too_large(max_bytes: int) -> FileTooLarge:
    limit_mb = max_bytes / (1024 * 1024)
    return FileTooLarge(f"The file is larger than {limit_mb:g} MB.", details={"max_size_bytes": max_bytes})


def _missing_file() -> ValidationFailed:
    return ValidationFailed(
        "Send the image as multipart/form-data in a field named 'file'.",
        details={"errors": [{"loc": ["body", FILE_FIELD], "msg": "Field required", "type": "missing"}]},
    )


async def _limited(stream: AsyncIterator[bytes], limit: int, max_bytes: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise _too_large(max_bytes)
        yield chunk


async def receive_upload(request: Request, max_bytes: int, read_timeout: float) -> ReceivedUpload:
    """Parse the body's `file` part into a spooled temporary file, within `max_bytes` and `read_timeout`."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise _missing_file()
    body_limit = max_bytes + MULTIPART_OVERHEAD_BYTES
    declared_length = request.headers.get("content-length")
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > body_limit:
        raise _too_large(max_bytes)

    parser = MultiPartParser(
        request.headers,
        _limited(request.stream(), body_limit, max_bytes),
        max_files=1,
        max_fields=16,
        max_part_size=16 * 1024,
    )
    try:
        with anyio.fail_after(read_timeout):
            form = await parser.parse()
    except TimeoutError:
        raise UploadTimeout(
            f"The upload did not arrive within {read_timeout:g} seconds.", details={"timeout_seconds": read_timeout}
        ) from None
    except MultiPartException as error:
        raise InvalidRequest(f"Malformed multipart body: {error.message}") from None
    except ClientDisconnect:
        raise InvalidRequest("The client disconnected before the upload finished.") from None

    upload = form.get(FILE_FIELD)
    if not isinstance(upload, UploadFile):
        await form.close()
        raise _missing_file()
    size = upload.size or 0
    if size > max_bytes:
        await form.close()
        raise _too_large(max_bytes)
    if size == 0:
        await form.close()
        raise InvalidRequest("The file is empty.", details={"field": FILE_FIELD})
    upload.file.seek(0)
    fields = {name: value for name, value in form.multi_items() if isinstance(value, str)}
    return ReceivedUpload(
        file=upload.file,
        filename=upload.filename,
        declared_content_type=upload.content_type,
        size=size,
        fields=fields,
    )


def upload_options(fields: dict[str, str], settings: Settings, *, anonymous: bool) -> UploadOptions:
    """The visibility and expiry the form asks for; VALIDATION_ERROR (or UNAUTHORIZED) for what cannot be."""
    raw_visibility = fields.get(VISIBILITY_FIELD) or Visibility.UNLISTED.value
    try:
        visibility = Visibility(raw_visibility.strip().lower())
    except ValueError:
        raise ValidationFailed.of_field(VISIBILITY_FIELD, "visibility is `unlisted` or `private`.") from None
    if visibility is Visibility.PRIVATE and anonymous:
        raise Unauthorized("Private uploads need a login or an API key: nobody else could ever see them.")
    expires_at = None
    raw_expiry = fields.get(EXPIRES_FIELD)
    if raw_expiry:
        try:
            lifetime = parse_duration(raw_expiry)
        except ValueError as error:
            raise ValidationFailed.of_field(EXPIRES_FIELD, f"expires_in: {error}.") from None
        expires_at = utc_now() + image_service.expiry_from(int(lifetime.total_seconds()), settings.max_expiry_days)
    return UploadOptions(visibility=visibility, expires_at=expires_at)


async def store_upload(
    request: Request,
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: StorageBackend,
    settings: Settings,
    thumbnails: ThumbnailQueue,
    owner: Uploader | None,
) -> tuple[Image, str | None]:
    """Read the upload from the body and hand it to the image service; the spooled file is closed after."""
    received = await receive_upload(request, settings.max_file_size_bytes, settings.upload_read_timeout_seconds)
    try:
        options = upload_options(received.fields, settings, anonymous=owner is None)
        return await uploads.create_image(
            sessionmaker,
            storage,
            settings,
            received,
            owner=owner,
            client_ip=client_ip(request),
            thumbnails=thumbnails,
            options=options,
        )
    finally:
        received.file.close()
