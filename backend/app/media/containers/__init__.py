"""Walkers over the structure of the formats Chitram accepts, one module per container.

    jpeg      segments (markers, lengths) and the entropy-coded data that follows each scan header
    png       chunks (length, type, payload, CRC)
    riff      RIFF chunks, the container of WebP
    gif       the screen descriptor and the blocks that follow it (images, extensions, trailer)
    isobmff   ISO base media boxes and the item tables of HEIF (AVIF, HEIC)

Walkers read `bytes` or `memoryview` and return offsets into them, so callers can slice without
copying. They never read outside the data, every loop is bounded by its length, a file made of
thousands of tiny segments, chunks, blocks or boxes is refused before walking it costs much (the
MAX_ constants of each module), and every way a file can fail to be walked surfaces as
`MalformedContainer`, never as IndexError, struct.error or RecursionError.
"""

from __future__ import annotations

from typing import TypeAlias

# What walkers accept: anything sliceable that indexes to ints and that `struct` and `re` can read.
ByteData: TypeAlias = bytes | bytearray | memoryview


class MalformedContainer(ValueError):
    """The file's structure cannot be walked: truncated, corrupt or hostile."""


def starts_with(data: ByteData, prefix: bytes) -> bool:
    """`data.startswith(prefix)` that memoryviews can answer too (they have no startswith)."""
    return bytes(data[: len(prefix)]) == prefix
