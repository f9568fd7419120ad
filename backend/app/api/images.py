"""Image endpoints: upload, metadata, the original's bytes, thumbnail, share links, changes, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from app.api.deps import (
    OAUTH2_SCHEME_NAME,
    CacheDep,
    DeleteTokenDep,
    ImageDep,
    OptionalPrincipalDep,
    ReadImageDep,
    SessionDep,
    SessionmakerDep,
    StorageDep,
    authorization_bearer,
    presented_credential,
    request_principal,
)
from app.api.file_responses import CONDITIONAL_REQUEST_PARAMETERS, stored_file_response
from app.api.upload_body import UPLOAD_REQUEST_BODY, store_upload
from app.api.variant_query import parse_file_query, share_pass_of
from app.errors import (
    AnimationTooLarge,
    DeleteTokenRequired,
    FileTooLarge,
    Forbidden,
    ImageDimensionsExceeded,
    ImageNotFound,
    InsufficientScope,
    InvalidDeleteToken,
    InvalidFileFormat,
    InvalidImage,
    InvalidRequest,
    InvalidVariant,
    QuotaExceeded,
    RangeNotSatisfiable,
    RateLimitExceeded,
    ServiceUnavailable,
    ShareLinkExpired,
    StorageUnavailable,
    ThumbnailNotReady,
    TokenExpired,
    Unauthorized,
    UploadTimeout,
    ValidationFailed,
    VariantUnavailable,
)
from app.media.formats import ALL_CONTENT_TYPES
from app.media.thumbnails import THUMBNAIL_CONTENT_TYPES
from app.media.variants import REQUESTABLE_FORMATS
from app.models import ThumbnailStatus
from app.observability.metrics import counted_refusals
from app.schemas.errors import error_responses
from app.schemas.image import ImageRead, ImageUploaded
from app.services import credentials, delivery, image_access, image_service, share_links
from app.services.credentials import Principal
from app.services.share_links import SharedFile
from app.services.variants import VariantService

router = APIRouter(prefix="/api/v1/images", tags=["images"])


@router.post(
    "/upload",
    status_code=status.HTTP_201_CREATED,
    response_model=ImageUploaded,
    # The body and the optional Bearer token are read by the handler itself, so they are declared here.
    openapi_extra={
        "requestBody": UPLOAD_REQUEST_BODY,
        "security": [{OAUTH2_SCHEME_NAME: []}],
    },
    responses=error_responses(
        InvalidRequest,
        InvalidFileFormat,
        InvalidImage,
        ImageDimensionsExceeded,
        AnimationTooLarge,
        FileTooLarge,
        ValidationFailed,
        StorageUnavailable,
        Unauthorized,
        TokenExpired,
        RateLimitExceeded,
        ServiceUnavailable,
        UploadTimeout,
        InsufficientScope,
        QuotaExceeded,
    ),
)
async def upload_image(request: Request) -> Response:
    """Upload an image (multipart field `file`): JPEG, PNG, WebP, GIF, AVIF or HEIC/HEIF, told from its bytes.

    The stored file has no metadata but its colour profile and orientation (no GPS, camera, XMP,
    IPTC, comments); identical content is stored once, and every upload still gets its own record.

    With a Bearer token the image belongs to that account; an anonymous upload gets a one-time
    `delete_token` in this response instead.
    """
    # No dependencies, like the hot reads (each costs a resolution per request: docs/performance.md).
    # The token is checked before an upload slot is taken or a byte of the body is read.
    state = request.app.state
    with counted_refusals():
        presented = presented_credential(request, authorization_bearer(request))
        owner = None
        if presented is not None:
            owner = await credentials.uploader(
                state.sessionmaker, presented, jwt_secret=state.jwt_secret, settings=state.settings
            )
        elif not state.settings.allow_anonymous_uploads:
            raise Unauthorized("Anonymous uploads are disabled; log in to upload.")
        async with state.upload_slots.acquire():
            image, delete_token = await store_upload(
                request, state.sessionmaker, state.storage, state.settings, state.thumbnails, owner=owner
            )
    uploaded = ImageUploaded.describe(image, state.settings.variant_widths).model_copy(
        update={"delete_token": delete_token}
    )
    return Response(uploaded.model_dump_json(), status_code=status.HTTP_201_CREATED, media_type="application/json")


@router.get(
    "/{image_id}",
    response_model=ImageRead,
    responses={
        200: {"headers": {"X-Cache": {"description": "HIT, MISS or DISABLED", "schema": {"type": "string"}}}},
        **error_responses(ImageNotFound, Unauthorized, TokenExpired, InsufficientScope),
    },
    openapi_extra={"security": [{}, {OAUTH2_SCHEME_NAME: []}]},
)
async def read_image(image_id: str, request: Request) -> Response:
    """Metadata of one image (served from the cache when warm: see `X-Cache`).

    A private image's is answered to its owner alone (a login, or an API key with `images:read`);
    to anyone else it is IMAGE_NOT_FOUND, as is an image past its `expires_at`.
    """
    # The hottest read of the API: no dependencies (each costs a resolution per request) and the
    # cached JSON sent as it is stored (docs/performance.md).
    state = request.app.state
    metadata, cache_status = await image_service.get_image_metadata(
        state.reads, state.cache, image_id, variant_widths=state.settings.variant_widths
    )
    headers: dict[str, str] = {"X-Cache": cache_status}
    if image_access.restricted(metadata.value) and await image_access.require_readable(
        metadata.value, lambda: _caller(request)
    ):
        headers["Cache-Control"] = image_access.PRIVATE_NO_STORE
    # Near-copy hits usually never get here: NearCacheHitMiddleware sends this same response first.
    return Response(metadata.body, media_type="application/json", headers=headers)


async def _caller(request: Request) -> Principal | None:
    """Who presented credentials, read only where a private image needs it."""
    return await request_principal(request, authorization_bearer(request))


FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The original bytes, or the variant asked for.",
        "content": {content_type: {} for content_type in ALL_CONTENT_TYPES},
    },
    206: {"description": "One byte range of the file."},
    302: {"description": "Redirect to a short-lived URL of the object store (FILE_DELIVERY=presigned-redirect)."},
    304: {"description": "Not modified (If-None-Match matched the ETag)."},
    **error_responses(
        InvalidVariant,
        ImageNotFound,
        RangeNotSatisfiable,
        VariantUnavailable,
        StorageUnavailable,
        ServiceUnavailable,
        ShareLinkExpired,
        Unauthorized,
        TokenExpired,
        InsufficientScope,
    ),
}
# The query of a variant, parsed by the handler itself (so that anything else is INVALID_VARIANT, not a 422).
VARIANT_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "w",
        "in": "query",
        "required": False,
        "schema": {"type": "integer"},
        "description": "A width from VARIANT_WIDTHS (default 150, 300, 600, 1200): the picture scaled to it, "
        "oriented, never upscaled.",
    },
    {
        "name": "format",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": list(REQUESTABLE_FORMATS)},
        "description": "jpeg, png, webp, avif, or auto (AVIF, then WebP, as Accept allows, else JPEG or PNG; the "
        "answer carries Vary: Accept). Animations stay animated in WebP and GIF; other formats take the "
        "first frame. Without it, the original's format (HEIC and HEIF become JPEG or PNG).",
    },
]
# A signed share link's pair (POST /share writes them; both or neither).
SHARE_LINK_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "exp",
        "in": "query",
        "required": False,
        "schema": {"type": "integer"},
        "description": "A share link's end (unix seconds); with `sig`.",
    },
    {
        "name": "sig",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "A share link's signature; with `exp`. Reaches a private image without credentials.",
    },
]
# A private image's files are read with credentials (the owner) or a share link; public ones with neither.
FILE_SECURITY: list[dict[str, list[str]]] = [{}, {OAUTH2_SCHEME_NAME: []}]
FILE_PARAMETERS = {
    "parameters": [*VARIANT_PARAMETERS, *SHARE_LINK_PARAMETERS, *CONDITIONAL_REQUEST_PARAMETERS["parameters"]],
    "security": FILE_SECURITY,
}


@router.get(
    "/{image_id}/file",
    response_class=Response,
    responses=FILE_RESPONSES,
    operation_id="download_image",
    openapi_extra=FILE_PARAMETERS,
)
@router.head(
    "/{image_id}/file",
    response_class=Response,
    responses=FILE_RESPONSES,
    operation_id="head_image",
    openapi_extra=FILE_PARAMETERS,
)
async def download_image(image_id: str, request: Request) -> Response:
    """The original bytes, or with `w` and/or `format` a variant (made on the first request, then stored).

    Both are served alike: strong ETag, 304, single ranges, immutable caching, no metadata. A private
    image's answer only its owner or a share link (`exp`, `sig`) gets, never kept by shared caches; an
    image that ends is cached no longer than it lives.
    """
    state = request.app.state  # a hot read, like read_image: no dependencies
    widths = state.settings.variant_widths
    query = parse_file_query(request, widths)
    metadata, _ = await image_service.get_image_metadata(state.reads, state.cache, image_id, variant_widths=widths)
    caching = image_access.PUBLIC_FOREVER
    if query.share is not None or image_access.restricted(metadata.value):
        caching = await image_access.file_access(
            metadata.value,
            query.shared_file(metadata.value["id"]),
            share=query.share,
            secret=state.jwt_secret,
            load_principal=lambda: _caller(request),
        )
    asked = query.variant
    if asked is None:
        stored = delivery.original_from_metadata(metadata.value)
        return await stored_file_response(request, state.storage, stored, caching)
    variants: VariantService = state.variants
    recipe = asked.recipe_for(metadata.value)
    stored = await variants.find(metadata.value, recipe)
    try:
        response = await stored_file_response(request, state.storage, stored, caching)
    except ImageNotFound:
        # The object this process remembered went with the content's last image (the content may have
        # been uploaded again since): forget it and look once more, which renders it again if need be.
        variants.forget(metadata.value["checksum"], recipe.name(variants.encoders))
        stored = await variants.find(metadata.value, recipe)
        response = await stored_file_response(request, state.storage, stored, caching)
    if asked.negotiated:
        response.headers["Vary"] = "Accept"
    return response


THUMBNAIL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The thumbnail (JPEG, or PNG when the original has transparency).",
        "content": {content_type: {} for content_type in THUMBNAIL_CONTENT_TYPES},
    },
    206: {"description": "One byte range of the thumbnail."},
    302: {"description": "Redirect to a short-lived URL of the object store (FILE_DELIVERY=presigned-redirect)."},
    304: {"description": "Not modified (If-None-Match matched the ETag)."},
    **error_responses(
        ImageNotFound,
        ThumbnailNotReady,
        RangeNotSatisfiable,
        StorageUnavailable,
        InvalidVariant,
        ShareLinkExpired,
        Unauthorized,
        TokenExpired,
        InsufficientScope,
    ),
}
THUMBNAIL_PARAMETERS = {
    "parameters": [*SHARE_LINK_PARAMETERS, *CONDITIONAL_REQUEST_PARAMETERS["parameters"]],
    "security": FILE_SECURITY,
}


@router.get(
    "/{image_id}/thumbnail",
    response_class=Response,
    responses=THUMBNAIL_RESPONSES,
    operation_id="download_thumbnail",
    openapi_extra=THUMBNAIL_PARAMETERS,
)
@router.head(
    "/{image_id}/thumbnail",
    response_class=Response,
    responses=THUMBNAIL_RESPONSES,
    operation_id="head_thumbnail",
    openapi_extra=THUMBNAIL_PARAMETERS,
)
async def download_thumbnail(request: Request, image: ReadImageDep, storage: StorageDep) -> Response:
    """The 300 px thumbnail, or THUMBNAIL_NOT_READY while it is being made (read like the file: a private
    image's by its owner or through a share link)."""
    # Before anything about the thumbnail is told: its state would tell that the image exists.
    caching = await image_access.file_access(
        image,
        SharedFile(image.id, share_links.THUMBNAIL),
        share=share_pass_of(dict(request.query_params)),
        secret=request.app.state.jwt_secret,
        load_principal=lambda: _caller(request),
    )
    if image.thumbnail_status == ThumbnailStatus.FAILED:
        raise ThumbnailNotReady(
            "No thumbnail can be made for this image.",
            details={"thumbnail_status": "failed", "reason": image.thumbnail_error},
        )
    if image.thumbnail_status != ThumbnailStatus.READY:
        raise ThumbnailNotReady(details={"thumbnail_status": image.thumbnail_status}, headers={"Retry-After": "1"})
    return await stored_file_response(request, storage, delivery.thumbnail_file(image), caching)


@router.delete(
    "/{image_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(
        ImageNotFound, Unauthorized, TokenExpired, Forbidden, DeleteTokenRequired, InvalidDeleteToken
    ),
)
async def delete_image(
    image: ImageDep,
    session: SessionDep,
    sessionmaker: SessionmakerDep,
    storage: StorageDep,
    cache: CacheDep,
    principal: OptionalPrincipalDep,
    delete_token: DeleteTokenDep,
) -> Response:
    """Delete an image: its owner (login, or an API key with `images:delete`) or the holder of its delete
    token (`X-Delete-Token`)."""
    image_service.authorize_delete(image, principal, delete_token)
    await image_service.delete_image(session, sessionmaker, storage, image, forget_cached=cache.invalidate)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
