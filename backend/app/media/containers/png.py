"""PNG chunks: a 4-byte big-endian length, a 4-byte type, the payload and a 4-byte CRC."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final, NamedTuple

from app.media.containers import ByteData, MalformedContainer

SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
# The PNG specification caps chunk lengths at 2**31 - 1 so that they never read as negative.
_MAX_CHUNK_LENGTH: Final = 2**31 - 1
# Real files have a few dozen chunks (an APNG a few per frame); each costs a microsecond to walk,
# so a file of tiny chunks past this count is hostile and is refused rather than walked.
MAX_CHUNKS: Final = 100_000


class Chunk(NamedTuple):
    """One chunk; offsets index the walked data."""

    type: bytes
    start: int  # the length field
    end: int  # past the CRC

    @property
    def payload_start(self) -> int:
        return self.start + 8

    @property
    def payload_end(self) -> int:
        return self.end - 4


def iter_chunks(data: ByteData) -> Iterator[Chunk]:
    """Yield every chunk after the signature, in order, up to and including IEND."""
    size = len(data)
    if data[:8] != SIGNATURE:
        raise MalformedContainer("a PNG starts with its 8-byte signature")
    position = len(SIGNATURE)
    for _ in range(MAX_CHUNKS):
        if position >= size:
            return
        if position + 12 > size:
            raise MalformedContainer("a PNG chunk header is cut off")
        length, chunk_type = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if length > _MAX_CHUNK_LENGTH or end > size:
            raise MalformedContainer(f"the PNG chunk {chunk_type!r} runs past the end of the data")
        yield Chunk(chunk_type, position, end)
        if chunk_type == b"IEND":
            return
        position = end
    raise MalformedContainer(f"the PNG has more than {MAX_CHUNKS} chunks")
