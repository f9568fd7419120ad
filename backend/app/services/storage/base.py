"""The storage interface every backend implements (strategy pattern).

Keys are opaque strings made by the service (`<uuid>.jpg`), never from user input. A backend
raises `StorageUnavailable` when it cannot reach its store and `StoredObjectMissing` for a key it
does not hold; it never blocks the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping
from typing import BinaryIO

import anyio.to_thread

CHUNK_SIZE = 256 * 1024
# A range up to this size is read whole when the object is opened: one hop, one response body.
WHOLE_READ_LIMIT = 1024 * 1024


def first_read_size(length: int | None) -> int:
    """How much to read when opening: small ranges whole, larger ones a chunk at a time (flat memory)."""
    return length if length is not None and length <= WHOLE_READ_LIMIT else CHUNK_SIZE


class StoredObjectMissing(LookupError):
    """The key is not in the store."""


class StorageBackend(ABC):
    name: str

    @abstractmethod
    async def startup(self) -> None:
        """Prepare the store (create the bucket or folder); bounded in time."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections."""

    async def save(self, key: str, source: BinaryIO, size: int, content_type: str) -> None:
        """Store `size` bytes read from `source` (positioned at 0) under `key`, streaming."""
        # One thread hop for the whole write: sizes are bounded by the upload limit.
        await anyio.to_thread.run_sync(self.save_blocking, key, source, size, content_type)

    @abstractmethod
    def save_blocking(self, key: str, source: BinaryIO, size: int, content_type: str) -> None:
        """`save` for a caller already on a worker thread: it blocks, so never call it on the event loop.

        Work that ends in storing its result (an upload's validation, a thumbnail's render) does
        both in one hop: under load every hop waits its turn for a thread and for the event loop.
        """

    @abstractmethod
    async def open_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Open `key` and return an iterator over its bytes `start..end` (inclusive; `None` = last).

        Opening happens here, so a missing key (`StoredObjectMissing`) or a dead store
        (`StorageUnavailable`) raises before the caller has sent any response headers. The
        iterator releases its file or connection when exhausted or closed early.
        """

    async def read_all(self, key: str) -> bytes:
        """The whole object in memory: only for objects bounded by the upload limit (thumbnail jobs)."""
        return b"".join([chunk async for chunk in await self.open_range(key)])

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error."""

    @abstractmethod
    async def exists(self, key: str) -> bool:
        """Whether `key` is stored."""

    async def presigned_get_url(
        self, key: str, expires_seconds: int, response_headers: Mapping[str, str] | None = None
    ) -> str | None:
        """A URL from which clients can GET `key` directly, or None when the store cannot give one."""
        return None

    async def free_bytes(self) -> int | None:
        """Room left for new objects, where the store can tell (a local disk); None otherwise."""
        return None

    @abstractmethod
    async def health_check(self) -> bool:
        """True when the store answers; never raises."""
