"""Access tokens (HS256 JWT via PyJWT) and anonymous delete tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import jwt

from app.errors import TokenExpired, Unauthorized

ALGORITHM = "HS256"
ISSUER = "chitram"
DELETE_TOKEN_BYTES = 32  # 256 bits of entropy


def create_access_token(user_id: uuid.UUID, *, secret: str, expire_minutes: int) -> tuple[str, datetime]:
    """A signed token for `user_id` and the moment it expires.

    `iss` binds the token to this service, `jti` makes every token distinct (and revocable later).
    """
    issued_at = datetime.now(UTC)
    expires_at = issued_at + timedelta(minutes=expire_minutes)
    claims = {
        "sub": str(user_id),
        "iat": issued_at,
        "exp": expires_at,
        "iss": ISSUER,
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires_at


def decode_access_token(token: str, *, secret: str) -> uuid.UUID:
    """The user id a valid token names; TOKEN_EXPIRED or UNAUTHORIZED otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # never accept "none" or an algorithm the client picks
            issuer=ISSUER,
            options={"require": ["sub", "exp", "iat", "iss"]},
        )
        return uuid.UUID(str(claims["sub"]))
    except jwt.ExpiredSignatureError:
        raise TokenExpired() from None
    except (jwt.InvalidTokenError, ValueError):
        raise Unauthorized("The access token is invalid.") from None


def new_delete_token() -> str:
    """A fresh URL-safe delete token (256 bits)."""
    return secrets.token_urlsafe(DELETE_TOKEN_BYTES)


def hash_delete_token(token: str) -> str:
    """SHA-256 hex: the token has 256 bits of entropy, so a fast hash cannot be brute-forced."""
    return hashlib.sha256(token.encode()).hexdigest()


def delete_token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented token against the stored hash."""
    return hmac.compare_digest(hash_delete_token(token), stored_hash)
