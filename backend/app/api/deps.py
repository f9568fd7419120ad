"""Dependency aliases, so handlers read like the sentence they implement."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import OAuth2PasswordBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.web_support import SAFE_METHODS, check_csrf
from app.config import Settings
from app.database import get_session
from app.errors import Unauthorized
from app.models import Image, User
from app.services import auth_service, image_service
from app.services.cache import MetadataCache
from app.services.concurrency import UploadSlots
from app.services.storage import StorageBackend
from app.services.tokens import decode_access_token
from app.services.uploads import ThumbnailQueue

# auto_error=False: anonymous callers are allowed where the handler says so.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
# Its name in OpenAPI, for routes that read the token themselves (Swagger UI sends it only where declared).
OAUTH2_SCHEME_NAME = oauth2_scheme.scheme_name


# Dependencies are `async def` even when they do not await: FastAPI runs plain `def` dependencies
# in a worker thread, a hop per dependency per request.
async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


async def _storage(request: Request) -> StorageBackend:
    storage: StorageBackend = request.app.state.storage
    return storage


async def _cache(request: Request) -> MetadataCache:
    cache: MetadataCache = request.app.state.cache
    return cache


async def _thumbnails(request: Request) -> ThumbnailQueue:
    thumbnails: ThumbnailQueue = request.app.state.thumbnails
    return thumbnails


async def _upload_slot(request: Request) -> AsyncIterator[None]:
    slots: UploadSlots = request.app.state.upload_slots
    async with slots.acquire():
        yield


# scope="function": commit (or roll back) before the response is sent, so a 2xx means committed.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(_settings)]
# For work that runs after the request's commit in transactions of its own (collecting shared objects).
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker)]
StorageDep = Annotated[StorageBackend, Depends(_storage)]
CacheDep = Annotated[MetadataCache, Depends(_cache)]
ThumbnailsDep = Annotated[ThumbnailQueue, Depends(_thumbnails)]
# Taken before the body is read, released as soon as the handler is done with it.
UploadSlotDep = Annotated[None, Depends(_upload_slot, scope="function")]


def bearer_token(request: Request, header_token: str | None) -> str | None:
    """The access token from the Authorization header, else from the browser's session cookie."""
    if header_token:
        return header_token
    cookie: str | None = request.cookies.get(request.app.state.session_cookie_name)
    return cookie or None


def presented_user_id(request: Request, header_token: str | None) -> uuid.UUID | None:
    """The user id of the presented access token (header, else cookie), None when there is none.

    A token that is present but bad is an error, never a silent fall-back to anonymous. A token from
    the browser's cookie on a state-changing request must come with the CSRF token of our pages.
    """
    presented = bearer_token(request, header_token)
    if presented is None:
        return None
    if header_token is None and request.method not in SAFE_METHODS:
        check_csrf(request)
    return decode_access_token(presented, secret=request.app.state.jwt_secret)


def authorization_bearer(request: Request) -> str | None:
    """The Bearer token of the Authorization header, as `oauth2_scheme` reads it, for routes without dependencies."""
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    return token if scheme.lower() == "bearer" and token else None


async def _optional_user(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> User | None:
    user_id = presented_user_id(request, token)
    if user_id is None:
        return None
    return await auth_service.load_token_user(request.app.state.sessionmaker, user_id)


OptionalUserDep = Annotated[User | None, Depends(_optional_user)]


async def _current_user(user: OptionalUserDep) -> User:
    if user is None:
        raise Unauthorized()
    return user


CurrentUserDep = Annotated[User, Depends(_current_user)]


async def _image(image_id: str, session: SessionDep) -> Image:
    return await image_service.get_image(session, image_id)


ImageDep = Annotated[Image, Depends(_image)]


async def _delete_token(
    header: Annotated[str | None, Header(alias="X-Delete-Token", description="The anonymous upload's token.")] = None,
    query: Annotated[str | None, Query(alias="delete_token", description="Same, for old clients.")] = None,
) -> str | None:
    return header or query


DeleteTokenDep = Annotated[str | None, Depends(_delete_token)]


def client_ip(request: Request) -> str | None:
    """The peer address (already resolved from trusted proxy headers by the middleware)."""
    return request.client.host if request.client else None
