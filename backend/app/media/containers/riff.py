"""RIFF chunks, as WebP uses them: a fourcc, a little-endian size, the payload, a pad byte when odd.

A WebP file is one RIFF chunk of form type "WEBP"; bytes after the size it declares are not part
of the file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final, NamedTuple

from app.media.containers import ByteData, MalformedContainer

# "RIFF", its size, and the form type "WEBP": the chunks start right after.
HEADER_SIZE: Final = 12
# Real files have a handful of chunks (an animation one per frame); each costs a microsecond to
# walk, so a file of tiny chunks past this count is hostile and is refused rather than walked.
MAX_CHUNKS: Final = 100_000


class Chunk(NamedTuple):
    """One chunk; offsets index the walked data."""

    fourcc: bytes
    start: int
    payload_end: int
    end: int  # past the pad byte, when there is one

    @property
    def payload_start(self) -> int:
        return self.start + 8


def webp_end(data: ByteData) -> int:
    """Where the RIFF chunk of a WebP file ends, as its header declares it."""
    if len(data) < HEADER_SIZE or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise MalformedContainer("a WebP file starts with RIFF....WEBP")
    riff_size: int = struct.unpack_from("<I", data, 4)[0]
    end = 8 + riff_size
    if riff_size < 4 or end > len(data):
        raise MalformedContainer("the WebP file's RIFF size runs past the end of the data")
    return end


def iter_chunks(data: ByteData, start: int, end: int) -> Iterator[Chunk]:
    """Yield the chunks that fill data[start:end] exactly."""
    position = start
    for _ in range(MAX_CHUNKS):
        if position >= end:
            return
        if position + 8 > end:
            raise MalformedContainer("a RIFF chunk header is cut off")
        fourcc, size = struct.unpack_from("<4sI", data, position)
        payload_end = position + 8 + size
        chunk_end = payload_end + (size & 1)
        if chunk_end > end:
            # Writers have been known to leave out the last chunk's pad byte; readers accept that.
            if payload_end != end:
                raise MalformedContainer(f"the RIFF chunk {fourcc!r} runs past the end of its parent")
            chunk_end = end
        yield Chunk(fourcc, position, payload_end, chunk_end)
        position = chunk_end
    raise MalformedContainer(f"the RIFF holds more than {MAX_CHUNKS} chunks")
