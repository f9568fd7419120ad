"""Metadata removal for PNG and APNG: chunk by chunk, no decompression of anything.

Kept byte for byte with their CRCs: the chunks that make the pixels and the animation, and those
that say how to show them (colour space, transparency, gamma, physical size, background). Text
(tEXt, zTXt, iTXt), times, suggested palettes, private and unknown chunks go unread.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

from app.media.containers import MalformedContainer, png
from app.media.metadata.exif import kept_orientation, orientation_only_exif

_KEPT_CHUNKS: Final = frozenset(
    {
        b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS",
        b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"cICP", b"mDCV", b"cLLI",
        b"pHYs", b"bKGD", b"hIST",
        b"acTL", b"fcTL", b"fdAT",
    }
)  # fmt: skip


def strip_png(data: bytes) -> bytes:
    """The PNG with every chunk but the kept ones removed; nothing after IEND."""
    view = memoryview(data)
    parts: list[bytes | memoryview] = [view[: len(png.SIGNATURE)]]
    exif_seen = False
    for index, chunk in enumerate(png.iter_chunks(view)):
        if index == 0 and chunk.type != b"IHDR":
            raise MalformedContainer("a PNG's first chunk is IHDR")
        if chunk.type in _KEPT_CHUNKS:
            parts.append(view[chunk.start : chunk.end])
        elif chunk.type == b"eXIf" and not exif_seen:
            # The PNG specification allows one eXIf; a second one tells a viewer nothing more.
            exif_seen = True
            parts.append(_orientation_chunk(view[chunk.payload_start : chunk.payload_end]))
        if chunk.type == b"IEND":
            return b"".join(parts)
    raise MalformedContainer("the PNG ends without IEND")


def _orientation_chunk(exif: memoryview) -> bytes:
    """An eXIf holding the orientation alone, or nothing when the orientation is the default."""
    orientation = kept_orientation(exif)
    if orientation is None:
        return b""
    payload = orientation_only_exif(orientation)
    return struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
