"""Owners' changes to their images that are not uploads or deletes: share links, visibility and expiry (ADR 0017)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from app.api.deps import CacheDep, ImageDep, OptionalPrincipalDep, SessionDep, SettingsDep
from app.errors import Forbidden, ImageNotFound, InsufficientScope, TokenExpired, Unauthorized, ValidationFailed
from app.models.base import utc_now
from app.schemas.errors import error_responses
from app.schemas.image import ImageRead, ImageUpdate, ShareLink, ShareRequest
from app.services import image_access, image_service, share_links

router = APIRouter(prefix="/api/v1/images", tags=["images"])


@router.post(
    "/{image_id}/share",
    status_code=status.HTTP_201_CREATED,
    response_model=ShareLink,
    responses=error_responses(
        ImageNotFound, Unauthorized, TokenExpired, Forbidden, InsufficientScope, ValidationFailed
    ),
)
async def share_image(
    body: ShareRequest,
    request: Request,
    image: ImageDep,
    principal: OptionalPrincipalDep,
    settings: SettingsDep,
) -> ShareLink:
    """A signed link to your image's file (or a variant: `w`, `format`) that works without credentials for
    `expires_in` seconds, and never past the image's own expiry; also the thumbnail's, once it is ready.

    For private images above all; an altered link (another image, variant or expiry) fails. Needs the owner's
    login or an API key with `images:read`.
    """
    image_access.require_manager(image, principal, image_access.READ_SCOPE)
    shared = share_links.share_image(
        request.app.state.jwt_secret,
        image,
        lifetime=image_service.expiry_from(body.expires_in, settings.max_expiry_days),
        width=body.w,
        image_format=body.format,
        widths=settings.variant_widths,
        now=utc_now(),
    )
    base = str(request.base_url).rstrip("/")
    return ShareLink(
        url=base + shared.file,
        thumbnail_url=None if shared.thumbnail is None else base + shared.thumbnail,
        expires_at=shared.expires_at,
    )


@router.patch(
    "/{image_id}",
    response_model=ImageRead,
    responses=error_responses(
        ImageNotFound, Unauthorized, TokenExpired, Forbidden, InsufficientScope, ValidationFailed
    ),
)
async def update_image(
    body: ImageUpdate,
    image: ImageDep,
    session: SessionDep,
    cache: CacheDep,
    principal: OptionalPrincipalDep,
    settings: SettingsDep,
) -> ImageRead:
    """Change your image's `visibility` and/or `expires_in` (seconds from now; null: never expires).

    Needs the owner's login or an API key with `images:upload`.
    """
    image_access.require_manager(image, principal, "images:upload")
    updated = await image_service.update_image(
        session, image, body, max_expiry_days=settings.max_expiry_days, forget_cached=cache.invalidate
    )
    return ImageRead.describe(updated, settings.variant_widths)
