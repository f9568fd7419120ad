"""The one EXIF tag worth keeping: the orientation, which says how the stored pixels are displayed.

EXIF is a TIFF structure: a byte-order mark ("II" little-endian, "MM" big-endian), the number 42,
the offset of the first image file directory (IFD0), and in each IFD a count and 12-byte entries
(tag, type, count, value or offset). Orientation is tag 0x0112 in IFD0; 1 is the default.
"""

from __future__ import annotations

import struct
from typing import Final

from app.media.containers import ByteData, starts_with

ORIENTATION_TAG: Final = 0x0112
EXIF_PREFIX: Final = b"Exif\x00\x00"
_TIFF_HEADERS: Final = {b"II*\x00": "<", b"MM\x00*": ">"}
# The TIFF types Pillow reads; an orientation in any other type is passed over.
_KNOWN_TYPES: Final = frozenset({*range(1, 14), 16})
# Those of them Pillow reads as integers (BYTE reads as bytes): SHORT, LONG, SBYTE, SSHORT, SLONG, LONG8.
_INTEGER_FORMATS: Final = {3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 16: "Q"}
_ENTRY_SIZE: Final = 12


def exif_orientation(tiff: ByteData) -> int | None:
    """The orientation (1-8) in IFD0 of an EXIF block, or None when there is none or it is unreadable.

    Reads as Pillow does, so the orientation kept is the one it would have applied: up to two
    "Exif\\0\\0" prefixes are skipped, an IFD cut short still counts the entries before the cut, the
    first entry of a type Pillow knows decides, and of several values the first counts.
    """
    data = memoryview(tiff)
    for _ in range(2):
        if starts_with(data, EXIF_PREFIX):
            data = data[len(EXIF_PREFIX) :]
    byte_order = _TIFF_HEADERS.get(bytes(data[:4]))
    if byte_order is None or len(data) < 8:
        return None
    (ifd_offset,) = struct.unpack_from(byte_order + "I", data, 4)
    if ifd_offset + 2 > len(data):
        return None
    (entry_count,) = struct.unpack_from(byte_order + "H", data, ifd_offset)
    first_entry = ifd_offset + 2
    entry_count = min(entry_count, (len(data) - first_entry) // _ENTRY_SIZE)
    for entry in range(first_entry, first_entry + entry_count * _ENTRY_SIZE, _ENTRY_SIZE):
        tag, value_type, count = struct.unpack_from(byte_order + "HHI", data, entry)
        if tag == ORIENTATION_TAG and value_type in _KNOWN_TYPES:
            return _first_integer(data, byte_order, entry, value_type, count)
    return None


def _first_integer(data: memoryview, byte_order: str, entry: int, value_type: int, count: int) -> int | None:
    """The entry's first value when it is an integer from 1 to 8."""
    value_format = _INTEGER_FORMATS.get(value_type)
    if value_format is None or count == 0:
        return None
    value_size = struct.calcsize(value_format)
    value_at = entry + 8
    # Values that do not fit in the entry's four bytes are stored at an offset.
    if count * value_size > 4:
        (value_at,) = struct.unpack_from(byte_order + "I", data, entry + 8)
        if value_at + count * value_size > len(data):
            return None
    (value,) = struct.unpack_from(byte_order + value_format, data, value_at)
    return value if 1 <= value <= 8 else None


def orientation_only_exif(orientation: int) -> bytes:
    """A minimal big-endian TIFF whose IFD0 holds the orientation alone, and no next IFD."""
    if not 1 <= orientation <= 8:
        raise ValueError(f"an EXIF orientation is 1 to 8, not {orientation}")
    # Header, IFD0 at offset 8 with one entry (SHORT, count 1, value left-justified), next IFD 0.
    return struct.pack(">2sHIHHHIHHI", b"MM", 42, 8, 1, ORIENTATION_TAG, 3, 1, orientation, 0, 0)


def kept_orientation(tiff: ByteData) -> int | None:
    """The orientation worth keeping: 2-8; 1 is what a viewer assumes without any EXIF at all."""
    orientation = exif_orientation(tiff)
    return orientation if orientation is not None and orientation != 1 else None
