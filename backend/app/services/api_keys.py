"""API keys: made, listed and revoked by their owner; a presented key resolved to its account (ADR 0017).

A key reads `chk_<public_id>_<secret>`. The recognisable prefix lets secret scanners (and people) tell
it from other strings; `public_id` finds the row, so no secret is ever an index lookup; the secret has
256 random bits and only its SHA-256 is stored, compared in constant time. Nothing about a key is
cached: a revoked key fails on the very next request, on every process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.database import execute_alone, read_session
from app.errors import ApiKeyNotFound, Unauthorized
from app.models import ApiKey, User
from app.models.base import utc_now
from app.schemas.account import ApiKeyRead

KEY_PREFIX = "chk_"
PUBLIC_ID_BYTES = 8  # 16 hex characters: unique by construction, not secret
SECRET_BYTES = 32  # 256 bits
SCOPES = ("images:read", "images:upload", "images:delete")
# A key's last use is written at most this often, so a busy key does not cost a write per request.
TOUCH_INTERVAL = timedelta(seconds=60)


def looks_like_key(presented: str) -> bool:
    return presented.startswith(KEY_PREFIX)


def split_key(presented: str) -> tuple[str, str] | None:
    """(public_id, secret) of a well-formed key, else None."""
    public_id, separator, secret = presented.removeprefix(KEY_PREFIX).partition("_")
    if not looks_like_key(presented) or not separator or len(public_id) != 2 * PUBLIC_ID_BYTES or not secret:
        return None
    return public_id, secret


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(
    session: AsyncSession, user: User, *, name: str, scopes: Sequence[str], expires_in_days: int | None
) -> tuple[ApiKey, str]:
    """A new key for `user` and its full text, which exists only in this return value."""
    public_id, secret = secrets.token_hex(PUBLIC_ID_BYTES), secrets.token_urlsafe(SECRET_BYTES)
    now = utc_now()
    key = ApiKey(
        id=uuid.uuid4(),
        user_id=user.id,
        name=name,
        public_id=public_id,
        secret_hash=_hash_secret(secret),
        # In the order of SCOPES, whatever order they were asked in, each once.
        scopes=[scope for scope in SCOPES if scope in set(scopes)],
        created_at=now,
        expires_at=None if expires_in_days is None else now + timedelta(days=expires_in_days),
    )
    session.add(key)
    await session.flush()
    return key, f"{KEY_PREFIX}{public_id}_{secret}"


def describe_key(key: ApiKey) -> ApiKeyRead:
    """A key as its owner sees it listed: never its secret, its prefix to tell it from the others."""
    return ApiKeyRead.model_validate(
        {
            "id": key.id,
            "name": key.name,
            "scopes": key.scopes,
            "prefix": f"{KEY_PREFIX}{key.public_id}",
            "created_at": key.created_at,
            "last_used_at": key.last_used_at,
            "expires_at": key.expires_at,
        }
    )


async def list_keys(session: AsyncSession, user: User) -> list[ApiKey]:
    """The user's keys, newest first (revoked keys are deleted, so they are not here)."""
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    return list(rows)


async def revoke_key(session: AsyncSession, user: User, key_id: uuid.UUID) -> None:
    """Delete one of the user's keys; another user's key id is as unknown as a made-up one."""
    key = await session.get(ApiKey, key_id)
    if key is None or key.user_id != user.id:
        raise ApiKeyNotFound(details={"id": str(key_id)})
    await session.delete(key)
    await session.flush()


async def resolve_key(sessionmaker: async_sessionmaker[AsyncSession], presented: str) -> tuple[ApiKey, User]:
    """The key and its active account; UNAUTHORIZED for anything else (malformed, unknown, revoked, expired)."""
    parts = split_key(presented)
    if parts is None:
        raise Unauthorized("The API key is malformed.")
    public_id, secret = parts
    async with read_session(sessionmaker) as session:
        row = (
            await session.execute(
                select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.public_id == public_id)
            )
        ).first()
    # One answer for every way a key can be wrong, so a caller learns nothing about which keys exist.
    if row is None or not hmac.compare_digest(_hash_secret(secret), row.ApiKey.secret_hash):
        raise Unauthorized("The API key is not valid.")
    key, user = row.ApiKey, row.User
    now = utc_now()
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthorized("The API key has expired.")
    if not user.is_active:
        raise Unauthorized("The account for this key no longer exists.")
    if key.last_used_at is None or key.last_used_at <= now - TOUCH_INTERVAL:
        await _touch(sessionmaker, key.id, now)
    return key, user


async def _touch(sessionmaker: async_sessionmaker[AsyncSession], key_id: uuid.UUID, now: datetime) -> None:
    """Record the key's use; the WHERE keeps concurrent requests from all writing it."""
    await execute_alone(sessionmaker, _TOUCH, {"key_id": key_id, "now": now, "stale": now - TOUCH_INTERVAL})


_TOUCH = (
    update(ApiKey)
    .where(ApiKey.id == bindparam("key_id"))
    .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= bindparam("stale")))
    .values(last_used_at=bindparam("now"))
)
