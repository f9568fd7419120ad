"""Dependency aliases, so handlers read like the sentence they implement."""

from __future__ import annotations

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
from app.models import Image
from app.services import credentials, image_service
from app.services.cache import MetadataCache
from app.services.concurrency import UploadSlots
from app.services.credentials import Principal
from app.services.read_routing import ReadRouter
from app.services.storage import StorageBackend
from app.services.uploads import ThumbnailQueue

# auto_error=False: anonymous callers are allowed where the handler says so.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
# API keys (ADR 0017) come as a Bearer token (what OpenAPI declares, through the scheme above) or in
# this header, for tools that set headers rather than schemes. The header is read by `presented_credential`
# and described in the API's description, not declared as a second scheme: OpenAPI tools take two
# schemes as alternatives and test each alone, while every route reads both.
API_KEY_HEADER = "X-API-Key"
# Its name in OpenAPI, for routes that read credentials themselves (Swagger UI sends it only where declared).
OAUTH2_SCHEME_NAME = oauth2_scheme.scheme_name


# Dependencies are `async def` even when they do not await: FastAPI runs plain `def` dependencies
# in a worker thread, a hop per dependency per request.
async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


async def _reads(request: Request) -> ReadRouter:
    reads: ReadRouter = request.app.state.reads
    return reads


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
# Reads that may lag (metadata, listings, pages): on the replica once it has caught up, else the primary.
ReadsDep = Annotated[ReadRouter, Depends(_reads)]
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


def presented_credential(request: Request, header_token: str | None) -> str | None:
    """The API key (X-API-Key) or access token (Authorization header, else the session cookie) presented.

    A credential from the browser's cookie on a state-changing request must come with the CSRF token
    of our pages.
    """
    api_key = request.headers.get(API_KEY_HEADER)
    if api_key:
        return api_key
    presented = bearer_token(request, header_token)
    if presented is not None and header_token is None and request.method not in SAFE_METHODS:
        check_csrf(request)
    return presented


async def request_principal(request: Request, header_token: str | None) -> Principal | None:
    """Who presented a credential (None for nobody). A credential that is present but bad is an error,
    never a silent fall-back to anonymous."""
    presented = presented_credential(request, header_token)
    if presented is None:
        return None
    state = request.app.state
    return await credentials.authenticate(state.sessionmaker, presented, jwt_secret=state.jwt_secret)


def authorization_bearer(request: Request) -> str | None:
    """The Bearer token of the Authorization header, as `oauth2_scheme` reads it, for routes without dependencies."""
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    return token if scheme.lower() == "bearer" and token else None


async def _optional_principal(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal | None:
    return await request_principal(request, token)


OptionalPrincipalDep = Annotated[Principal | None, Depends(_optional_principal)]


async def _current_principal(principal: OptionalPrincipalDep) -> Principal:
    if principal is None:
        raise Unauthorized()
    return principal


CurrentPrincipalDep = Annotated[Principal, Depends(_current_principal)]


async def _login(principal: CurrentPrincipalDep) -> Principal:
    principal.require(credentials.ACCOUNT_SCOPE)
    return principal


# Account management: a login (access token or browser session), never an API key.
LoginDep = Annotated[Principal, Depends(_login)]


async def _image(image_id: str, session: SessionDep) -> Image:
    return await image_service.get_image(session, image_id)


ImageDep = Annotated[Image, Depends(_image)]


async def _read_image(image_id: str, reads: ReadsDep) -> Image:
    return await reads.run(lambda session: image_service.get_image(session, image_id))


# The image for a read that changes nothing (the replica may serve it); ImageDep for one that writes.
ReadImageDep = Annotated[Image, Depends(_read_image)]


async def _delete_token(
    header: Annotated[str | None, Header(alias="X-Delete-Token", description="The anonymous upload's token.")] = None,
    query: Annotated[str | None, Query(alias="delete_token", description="Same, for old clients.")] = None,
) -> str | None:
    return header or query


DeleteTokenDep = Annotated[str | None, Depends(_delete_token)]


def client_ip(request: Request) -> str | None:
    """The peer address (already resolved from trusted proxy headers by the middleware)."""
    return request.client.host if request.client else None
