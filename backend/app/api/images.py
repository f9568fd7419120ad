"""Image endpoints: upload, metadata, the original's bytes, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from app.api.deps import ImageDep, SessionDep, SettingsDep, StorageDep, client_ip
from app.api.file_responses import stored_file_response
from app.api.upload_body import UPLOAD_REQUEST_BODY, receive_upload
from app.errors import (
    FileTooLarge,
    ImageDimensionsExceeded,
    ImageNotFound,
    InvalidFileFormat,
    InvalidImage,
    InvalidRequest,
    RangeNotSatisfiable,
    StorageUnavailable,
    ValidationFailed,
)
from app.schemas.errors import error_responses
from app.schemas.image import ImageRead
from app.services import image_service

router = APIRouter(prefix="/api/v1/images", tags=["images"])


@router.post(
    "/upload",
    status_code=status.HTTP_201_CREATED,
    response_model=ImageRead,
    openapi_extra={"requestBody": UPLOAD_REQUEST_BODY},
    responses=error_responses(
        InvalidRequest,
        InvalidFileFormat,
        InvalidImage,
        ImageDimensionsExceeded,
        FileTooLarge,
        ValidationFailed,
        StorageUnavailable,
    ),
)
async def upload_image(request: Request, session: SessionDep, storage: StorageDep, settings: SettingsDep) -> ImageRead:
    """Upload a JPEG or PNG image (multipart field `file`)."""
    upload = await receive_upload(request, settings.max_file_size_bytes)
    try:
        image = await image_service.create_image(session, storage, settings, upload, client_ip=client_ip(request))
    finally:
        upload.file.close()
    return ImageRead.model_validate(image)


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
    responses=error_responses(ImageNotFound),
)
async def delete_image(image: ImageDep, session: SessionDep, storage: StorageDep) -> Response:
    """Delete an image and its stored bytes."""
    await image_service.delete_image(session, storage, image)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
