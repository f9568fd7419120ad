"""Recently served small files in memory, so a popular image is not fetched from storage per request.

Stored objects never change under their key (a key is made from a new id at upload), so a copy
cannot go stale; it is checked against the checksum the caller has from the metadata anyway.
A file is only ever looked up after its image was found, so a deleted image's copy is never served;
it merely stays in memory until it expires or is pushed out. Large files are never held: they
stream, so memory stays flat in the file size (ADR 0011).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

# Copies older than this are dropped, so a deleted image's bytes do not linger in memory for long.
HOT_FILE_TTL_SECONDS = 60.0


class HotFiles:
    """An LRU of whole files by storage key, bounded in bytes; `max_bytes=0` keeps nothing."""

    def __init__(
        self,
        *,
        max_bytes: int,
        max_object_bytes: int,
        ttl_seconds: float = HOT_FILE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_object_bytes = min(max_object_bytes, max_bytes)
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, str, bytes]] = OrderedDict()
        self.held_bytes = 0

    def holds(self, size: int) -> bool:
        """Whether a file of `size` bytes is worth reading whole to keep."""
        return 0 < size <= self.max_object_bytes

    def get(self, key: str, checksum: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, held_checksum, data = entry
        if held_checksum != checksum or self._clock() >= expires_at:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return data

    def put(self, key: str, checksum: str, data: bytes) -> None:
        if not self.holds(len(data)):
            return
        self._drop(key)
        self._entries[key] = (self._clock() + self.ttl_seconds, checksum, data)
        self.held_bytes += len(data)
        while self.held_bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.held_bytes -= len(entry[2])
