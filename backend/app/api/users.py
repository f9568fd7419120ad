"""The logged-in user's own things."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import CurrentUserDep, SessionDep, SettingsDep
from app.errors import TokenExpired, Unauthorized, ValidationFailed
from app.schemas.errors import error_responses
from app.schemas.image import ImagePage, ImageRead
from app.services import image_service

router = APIRouter(prefix="/api/v1/users", tags=["users"])


@router.get(
    "/me/images", response_model=ImagePage, responses=error_responses(Unauthorized, TokenExpired, ValidationFailed)
)
async def my_images(
    user: CurrentUserDep,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page.")] = None,
) -> ImagePage:
    """The caller's images, newest first, a page at a time."""
    images, next_cursor = await image_service.list_user_images(session, user, limit=limit, cursor=cursor)
    items = [ImageRead.describe(image, settings.variant_widths) for image in images]
    return ImagePage(items=items, next_cursor=next_cursor)
