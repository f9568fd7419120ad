"""Password hashing with Argon2id (pwdlib), always off the event loop."""

from __future__ import annotations

from functools import lru_cache

import anyio.to_thread
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher


@lru_cache(maxsize=1)
def _hasher() -> PasswordHash:
    return PasswordHash((Argon2Hasher(),))


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verified against when the email is unknown, so both failures cost one Argon2 verification.
    return _hasher().hash("chitram-timing-equaliser")


async def hash_password(password: str) -> str:
    """Argon2id hash of `password` (computed in a worker thread)."""
    return await anyio.to_thread.run_sync(_hasher().hash, password)


async def verify_password(password: str, hashed: str | None) -> bool:
    """Whether `password` matches `hashed`; with `hashed=None` it spends the same time and fails."""
    target = hashed if hashed is not None else _dummy_hash()
    matched = await anyio.to_thread.run_sync(_hasher().verify, password, target)
    return matched and hashed is not None
