"""Metadata removal for JPEG (and MPO, whose primary image is a JPEG): segment by segment, no decoding.

What decides the pixels and how they are shown stays byte for byte: every segment that is neither
APPn nor COM (tables, frame and scan headers, the entropy-coded data), JFIF (it decides that three
components are YCbCr), ICC profiles, Adobe APP14 (its colour transform) and the EXIF orientation.
Everything after the first EOI goes: MPO's other pictures, Ultra HDR gain maps, appended data.
"""

from __future__ import annotations

import struct
from typing import Final

from app.media.containers import jpeg, starts_with
from app.media.metadata.exif import EXIF_PREFIX, kept_orientation, orientation_only_exif

_JFIF_PREFIX: Final = b"JFIF\x00"
# Identifier, version, units and densities (12 bytes), then the thumbnail's width and height (1 each).
_JFIF_THUMBNAIL_SIZE_AT: Final = 12
_JFIF_HEADER_SIZE: Final = 14
_ICC_PREFIX: Final = b"ICC_PROFILE\x00"
_ADOBE_PREFIX: Final = b"Adobe"


def strip_jpeg(data: bytes) -> bytes:
    """The primary JPEG image with its metadata removed, all but what decoding and display need."""
    view = memoryview(data)
    parts: list[bytes | memoryview] = [view[:2]]
    exif_payloads: list[memoryview] = []
    exif_index = -1
    for segment in jpeg.iter_segments(view):
        marker = segment.marker
        if marker not in jpeg.APP_MARKERS and marker != jpeg.COM:
            parts.append(view[segment.start : segment.end])
            continue
        payload = view[segment.payload_start : segment.end]
        if marker == jpeg.APP0 and starts_with(payload, _JFIF_PREFIX):
            parts.append(_without_jfif_thumbnail(view[segment.start : segment.end], payload))
        elif marker == jpeg.APP1 and starts_with(payload, EXIF_PREFIX):
            if not exif_payloads:
                exif_index = len(parts)
                parts.append(b"")
            exif_payloads.append(payload)
        elif (marker == jpeg.APP2 and starts_with(payload, _ICC_PREFIX)) or (
            marker == jpeg.APP14 and starts_with(payload, _ADOBE_PREFIX)
        ):
            parts.append(view[segment.start : segment.end])
    if exif_payloads:
        parts[exif_index] = _orientation_segment(exif_payloads)
    return b"".join(parts)


def _without_jfif_thumbnail(segment: memoryview, payload: memoryview) -> bytes | memoryview:
    """JFIF with its thumbnail size set to 0x0 and the thumbnail gone; a JFIF too short to be one goes.

    libjpeg only takes an APP0 of at least 14 bytes as JFIF, so a shorter one decides nothing.
    """
    if len(payload) < _JFIF_HEADER_SIZE:
        return b""
    if len(payload) == _JFIF_HEADER_SIZE and bytes(payload[_JFIF_THUMBNAIL_SIZE_AT:]) == b"\x00\x00":
        return segment
    header = bytes(payload[:_JFIF_THUMBNAIL_SIZE_AT]) + b"\x00\x00"
    return struct.pack(">BBH", 0xFF, jpeg.APP0, len(header) + 2) + header


def _orientation_segment(exif_payloads: list[memoryview]) -> bytes:
    """An APP1 with an orientation-only EXIF, or nothing when the orientation is the default.

    Pillow reads EXIF split over several APP1 segments as one block (their TIFF parts joined), so
    the orientation is read the same way.
    """
    first, *rest = exif_payloads
    tiff = b"".join([first, *(payload[len(EXIF_PREFIX) :] for payload in rest)])
    orientation = kept_orientation(tiff)
    if orientation is None:
        return b""
    payload = EXIF_PREFIX + orientation_only_exif(orientation)
    return struct.pack(">BBH", 0xFF, jpeg.APP1, len(payload) + 2) + payload
