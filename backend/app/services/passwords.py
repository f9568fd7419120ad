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


def _verify(password: str, hashed: str | None) -> bool:
    # The dummy hash is made (once) here, in the worker thread, never on the event loop.
    return _hasher().verify(password, hashed if hashed is not None else _dummy_hash())


async def verify_password(password: str, hashed: str | None) -> bool:
    """Whether `password` matches `hashed`; with `hashed=None` it spends the same time and fails."""
    matched = await anyio.to_thread.run_sync(_verify, password, hashed)
    return matched and hashed is not None
