"""Image endpoints: upload, metadata, the original's bytes, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from app.api.deps import (
    DeleteTokenDep,
    ImageDep,
    OptionalUserDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    client_ip,
)
from app.api.file_responses import stored_file_response
from app.api.upload_body import UPLOAD_REQUEST_BODY, receive_upload
from app.errors import (
    DeleteTokenRequired,
    FileTooLarge,
    Forbidden,
    ImageDimensionsExceeded,
    ImageNotFound,
    InvalidDeleteToken,
    InvalidFileFormat,
    InvalidImage,
    InvalidRequest,
    RangeNotSatisfiable,
    StorageUnavailable,
    TokenExpired,
    Unauthorized,
    ValidationFailed,
)
from app.schemas.errors import error_responses
from app.schemas.image import ImageRead, ImageUploaded
from app.services import image_service

router = APIRouter(prefix="/api/v1/images", tags=["images"])


@router.post(
    "/upload",
    status_code=status.HTTP_201_CREATED,
    response_model=ImageUploaded,
    openapi_extra={"requestBody": UPLOAD_REQUEST_BODY},
    responses=error_responses(
        InvalidRequest,
        InvalidFileFormat,
        InvalidImage,
        ImageDimensionsExceeded,
        FileTooLarge,
        ValidationFailed,
        StorageUnavailable,
        Unauthorized,
        TokenExpired,
    ),
)
async def upload_image(
    request: Request, session: SessionDep, storage: StorageDep, settings: SettingsDep, user: OptionalUserDep
) -> ImageUploaded:
    """Upload a JPEG or PNG image (multipart field `file`).

    With a Bearer token the image belongs to that account; an anonymous upload gets a one-time
    `delete_token` in this response instead.
    """
    if user is None and not settings.allow_anonymous_uploads:
        raise Unauthorized("Anonymous uploads are disabled; log in to upload.")
    upload = await receive_upload(request, settings.max_file_size_bytes)
    try:
        image, delete_token = await image_service.create_image(
            session, storage, settings, upload, owner=user, client_ip=client_ip(request)
        )
    finally:
        upload.file.close()
    return ImageUploaded.model_validate(image).model_copy(update={"delete_token": delete_token})


@router.get("/{image_id}", response_model=ImageRead, responses=error_responses(ImageNotFound))
async def read_image(image: ImageDep) -> ImageRead:
    """Metadata of one image."""
    return ImageRead.model_validate(image)


FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The original bytes.", "content": {"image/jpeg": {}, "image/png": {}}},
    206: {"description": "One byte range of the original."},
    304: {"description": "Not modified (If-None-Match matched the ETag)."},
    **error_responses(ImageNotFound, RangeNotSatisfiable, StorageUnavailable),
}


@router.get("/{image_id}/file", response_class=Response, responses=FILE_RESPONSES, operation_id="download_image")
@router.head("/{image_id}/file", response_class=Response, responses=FILE_RESPONSES, operation_id="head_image")
async def download_image(request: Request, image: ImageDep, storage: StorageDep) -> Response:
    """The original bytes, streamed, with ETag and Range support."""
    return await stored_file_response(request, storage, image)


@router.delete(
    "/{image_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(
        ImageNotFound, Unauthorized, TokenExpired, Forbidden, DeleteTokenRequired, InvalidDeleteToken
    ),
)
async def delete_image(
    image: ImageDep, session: SessionDep, storage: StorageDep, user: OptionalUserDep, delete_token: DeleteTokenDep
) -> Response:
    """Delete an image: its owner (Bearer token) or the holder of its delete token (`X-Delete-Token`)."""
    image_service.authorize_delete(image, user, delete_token)
    await image_service.delete_image(session, storage, image)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
