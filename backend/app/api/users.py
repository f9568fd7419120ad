"""The logged-in user's own things: images, API keys, usage, password, the account itself."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from app.api.deps import CacheDep, CurrentPrincipalDep, LoginDep, ReadsDep, SessionDep, SettingsDep
from app.errors import (
    ApiKeyNotFound,
    InsufficientScope,
    InvalidCredentials,
    TokenExpired,
    Unauthorized,
    ValidationFailed,
)
from app.schemas.account import (
    AccountDelete,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    PasswordChange,
    UsageRead,
)
from app.schemas.errors import error_responses
from app.schemas.image import ImagePage, ImageRead
from app.schemas.user import AuthResponse
from app.services import account_service, api_keys, auth_service, image_service, usage

router = APIRouter(prefix="/api/v1/users", tags=["users"])

ACCOUNT_ERRORS = error_responses(Unauthorized, TokenExpired, InsufficientScope)


@router.get(
    "/me/images",
    response_model=ImagePage,
    responses=error_responses(Unauthorized, TokenExpired, InsufficientScope, ValidationFailed),
)
async def my_images(
    principal: CurrentPrincipalDep,
    reads: ReadsDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page.")] = None,
) -> ImagePage:
    """The caller's images (private ones too), newest first, a page at a time. API keys need `images:read`."""
    principal.require("images:read")
    images, next_cursor = await reads.run(
        lambda session: image_service.list_user_images(session, principal.user, limit=limit, cursor=cursor)
    )
    items = [ImageRead.describe(image, settings.variant_widths) for image in images]
    return ImagePage(items=items, next_cursor=next_cursor)


@router.get("/me/usage", response_model=UsageRead, responses=error_responses(Unauthorized, TokenExpired))
async def my_usage(principal: CurrentPrincipalDep, settings: SettingsDep) -> UsageRead:
    """What the caller's images take, and the quota (null = unlimited)."""
    return usage.usage_of(principal.user, settings)


@router.post(
    "/me/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=error_responses(Unauthorized, TokenExpired, InsufficientScope, ValidationFailed),
)
async def create_api_key(body: ApiKeyCreate, principal: LoginDep, session: SessionDep) -> ApiKeyCreated:
    """A new API key for tools (ShareX, scripts, the `chitram` CLI). The key is in this answer only: save it.

    Send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Needs a login, not a key.
    """
    key, text = await api_keys.create_key(
        session, principal.user, name=body.name, scopes=body.scopes, expires_in_days=body.expires_in_days
    )
    return ApiKeyCreated(**api_keys.describe_key(key).model_dump(), key=text)


@router.get("/me/api-keys", response_model=ApiKeyList, responses=ACCOUNT_ERRORS)
async def list_api_keys(principal: LoginDep, session: SessionDep) -> ApiKeyList:
    """The account's keys, newest first, without their secrets."""
    return ApiKeyList(items=[api_keys.describe_key(key) for key in await api_keys.list_keys(session, principal.user)])


@router.delete(
    "/me/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(Unauthorized, TokenExpired, InsufficientScope, ApiKeyNotFound),
)
async def revoke_api_key(key_id: uuid.UUID, principal: LoginDep, session: SessionDep) -> Response:
    """Revoke a key: it stops working at once, on every server process."""
    await api_keys.revoke_key(session, principal.user, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/me/password",
    response_model=AuthResponse,
    responses=error_responses(Unauthorized, TokenExpired, InsufficientScope, InvalidCredentials, ValidationFailed),
)
async def change_password(
    body: PasswordChange, request: Request, principal: LoginDep, session: SessionDep, settings: SettingsDep
) -> AuthResponse:
    """Change the password. Every access token issued before stops working (other sessions are logged out);
    the answer carries a new one for this client. API keys keep working."""
    user = await account_service.change_password(session, principal.user, body.current_password, body.new_password)
    return auth_service.login_answer(
        user, secret=request.app.state.jwt_secret, expire_minutes=settings.jwt_expire_minutes
    )


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(Unauthorized, TokenExpired, InsufficientScope, InvalidCredentials, ValidationFailed),
)
async def delete_account(body: AccountDelete, principal: LoginDep, session: SessionDep, cache: CacheDep) -> Response:
    """Delete the account (confirm with the password and the word DELETE): its keys and tokens stop working and
    its images are gone at once; their files are removed in the background soon after."""
    await account_service.delete_account(session, principal.user, body.password, forget_cached=cache.invalidate)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
