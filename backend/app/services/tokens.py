"""Access tokens (HS256 JWT via PyJWT) and anonymous delete tokens."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import jwt

from app.errors import TokenExpired, Unauthorized

ALGORITHM = "HS256"
ISSUER = "chitram"
DELETE_TOKEN_BYTES = 32  # 256 bits of entropy
# Tokens whose signature and claims were checked, kept so a token is verified once and not on every
# request (the rate limiter and the endpoint both need its user, and a client sends the same token
# again and again). Only valid tokens are kept; expiry is checked on every use.
VERIFIED_TOKENS_KEPT = 4096


class AccessClaims(NamedTuple):
    """What a valid access token says: whose it is, and the account's token version it was issued under."""

    user_id: uuid.UUID
    # Tokens from before versions existed have none: version 0, every account's first.
    version: int


def create_access_token(
    user_id: uuid.UUID, *, version: int = 0, secret: str, expire_minutes: int
) -> tuple[str, datetime]:
    """A signed token for `user_id` and the moment it expires.

    `iss` binds the token to this service, `jti` makes every token distinct, and `ver` is the
    account's token version: raising it (a password change) ends every token issued before.
    """
    issued_at = datetime.now(UTC)
    expires_at = issued_at + timedelta(minutes=expire_minutes)
    claims = {
        "sub": str(user_id),
        "iat": issued_at,
        "exp": expires_at,
        "iss": ISSUER,
        "jti": secrets.token_urlsafe(12),
        "ver": version,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires_at


def decode_access_token(token: str, *, secret: str) -> AccessClaims:
    """The user id and token version a valid token names; TOKEN_EXPIRED or UNAUTHORIZED otherwise."""
    try:
        claims, expires_at = _verified_claims(token, secret)
    except jwt.ExpiredSignatureError:
        raise TokenExpired() from None
    except (jwt.InvalidTokenError, ValueError):
        raise Unauthorized("The access token is invalid.") from None
    if expires_at <= time.time():  # PyJWT's own test, for a token verified while it was still valid
        raise TokenExpired()
    return claims


@functools.lru_cache(maxsize=VERIFIED_TOKENS_KEPT)
def _verified_claims(token: str, secret: str) -> tuple[AccessClaims, float]:
    """The claims and expiry of a token whose signature and claims hold (raises otherwise: not kept)."""
    claims = jwt.decode(
        token,
        secret,
        algorithms=[ALGORITHM],  # never accept "none" or an algorithm the client picks
        issuer=ISSUER,
        options={"require": ["sub", "exp", "iat", "iss"]},
    )
    version = claims.get("ver", 0)
    if not isinstance(version, int):
        raise ValueError("ver must be an integer")
    return AccessClaims(uuid.UUID(str(claims["sub"])), version), float(claims["exp"])


def new_delete_token() -> str:
    """A fresh URL-safe delete token (256 bits)."""
    return secrets.token_urlsafe(DELETE_TOKEN_BYTES)


def hash_delete_token(token: str) -> str:
    """SHA-256 hex: the token has 256 bits of entropy, so a fast hash cannot be brute-forced."""
    return hashlib.sha256(token.encode()).hexdigest()


def delete_token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented token against the stored hash."""
    return hmac.compare_digest(hash_delete_token(token), stored_hash)
