"""Who is asking: a login's access token or an API key, resolved to the account and what it may do (ADR 0017)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.errors import InsufficientScope
from app.models import User
from app.services import api_keys, auth_service, usage
from app.services.tokens import decode_access_token

# Held by a login (access token or the browser's session) and never by an API key: managing keys,
# changing the password and deleting the account need the password's holder, not a tool.
ACCOUNT_SCOPE = "account"
LOGIN_SCOPES = frozenset({*api_keys.SCOPES, ACCOUNT_SCOPE})


@dataclass(frozen=True)
class Principal:
    user: User
    scopes: frozenset[str]
    # The key that was presented; None for a login.
    api_key_id: uuid.UUID | None = None

    @property
    def user_id(self) -> uuid.UUID:
        return self.user.id

    def require(self, scope: str) -> None:
        """INSUFFICIENT_SCOPE unless this credential holds `scope`."""
        if scope in self.scopes:
            return
        message = (
            "Only a login may do this, not an API key."
            if scope == ACCOUNT_SCOPE
            else f"This API key lacks the scope {scope}."
        )
        raise InsufficientScope(message, details={"required": scope, "granted": sorted(self.scopes)})


def login_principal(user: User) -> Principal:
    """A logged-in user (access token or the browser's session): every scope."""
    return Principal(user, LOGIN_SCOPES)


@dataclass(frozen=True)
class Uploader:
    """Whose an upload is, as far as the request tells without reading the account: for a login's token,
    also the token version it was issued under, which the upload's own UPDATE of the account checks
    (`usage.reserve`), so a token ended by a password change uploads nothing."""

    user_id: uuid.UUID
    token_version: int | None = None


async def uploader(
    sessionmaker: async_sessionmaker[AsyncSession], presented: str, *, jwt_secret: str, settings: Settings
) -> Uploader:
    """Who uploads with this credential: UNAUTHORIZED, INSUFFICIENT_SCOPE or QUOTA_EXCEEDED before the body is read.

    An access token is checked by its signature alone here (every login may upload), and its account
    with the upload's write, so a login's upload reads the account once, as it always did. A key has
    to be read anyway, with its account: whose quota is full is then told at once.
    """
    if api_keys.looks_like_key(presented):
        principal = await authenticate(sessionmaker, presented, jwt_secret=jwt_secret)
        principal.require("images:upload")
        usage.check_room(principal.user, settings)
        return Uploader(principal.user_id)
    claims = decode_access_token(presented, secret=jwt_secret)
    return Uploader(claims.user_id, claims.version)


async def authenticate(sessionmaker: async_sessionmaker[AsyncSession], presented: str, *, jwt_secret: str) -> Principal:
    """The principal a presented key or access token stands for; UNAUTHORIZED / TOKEN_EXPIRED otherwise."""
    if api_keys.looks_like_key(presented):
        key, user = await api_keys.resolve_key(sessionmaker, presented)
        return Principal(user, frozenset(key.scopes), key.id)
    claims = decode_access_token(presented, secret=jwt_secret)
    user = await auth_service.load_token_user(sessionmaker, claims.user_id, claims.version)
    return login_principal(user)
