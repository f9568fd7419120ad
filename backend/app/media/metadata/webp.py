"""Metadata removal for WebP: RIFF chunk by chunk, no decoding.

A simple file (its first chunk VP8 or VP8L) is that one bitstream; an extended file (VP8X first)
may add an ICC profile, animation, alpha, EXIF and XMP, and its VP8X flags say which are there.
"""

from __future__ import annotations

import struct
from typing import Final

from app.media.containers import MalformedContainer, riff
from app.media.metadata.exif import kept_orientation, orientation_only_exif

_SIMPLE_BITSTREAMS: Final = frozenset({b"VP8 ", b"VP8L"})
_KEPT_CHUNKS: Final = frozenset({b"VP8X", b"ICCP", b"ANIM", b"ANMF", b"ALPH", b"VP8 ", b"VP8L"})
# VP8X: one byte of flags, three reserved, then the canvas width and height less one (three each).
_VP8X_PAYLOAD_SIZE: Final = 10
_EXIF_FLAG: Final = 0x08
_XMP_FLAG: Final = 0x04


def strip_webp(data: bytes) -> bytes:
    """The WebP with EXIF (but the orientation), XMP and unknown chunks removed; nothing after the RIFF."""
    view = memoryview(data)
    chunks = riff.iter_chunks(view, riff.HEADER_SIZE, riff.webp_end(view))
    first = next(chunks, None)
    if first is None:
        raise MalformedContainer("the WebP file holds no chunk")
    if first.fourcc in _SIMPLE_BITSTREAMS:
        # Decoders read the one bitstream and nothing after it, so anything after it is dropped too.
        return _riff([view[first.start : first.end]])
    if first.fourcc != b"VP8X" or first.payload_end - first.payload_start < _VP8X_PAYLOAD_SIZE:
        raise MalformedContainer("a WebP file starts with a VP8, VP8L or VP8X chunk")
    parts: list[bytes | memoryview] = []
    exif_kept = exif_seen = False
    for chunk in chunks:
        if chunk.fourcc in _KEPT_CHUNKS:
            parts.append(view[chunk.start : chunk.end])
        elif chunk.fourcc == b"EXIF" and not exif_seen:
            # Decoders (libwebp's demuxer, hence Pillow) read the first EXIF chunk only.
            exif_seen = True
            orientation = kept_orientation(view[chunk.payload_start : chunk.payload_end])
            if orientation is not None:
                parts.append(_chunk(b"EXIF", orientation_only_exif(orientation)))
                exif_kept = True
    flags = (view[first.payload_start] & ~(_EXIF_FLAG | _XMP_FLAG)) | (_EXIF_FLAG if exif_kept else 0)
    vp8x = view[first.start : first.end]
    return _riff([vp8x[:8], bytes([flags]), vp8x[9:], *parts])


def _riff(chunks: list[bytes | memoryview]) -> bytes:
    body = b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def _chunk(fourcc: bytes, payload: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)
