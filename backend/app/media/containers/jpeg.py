"""JPEG segments: markers, their length-prefixed payloads, and the entropy-coded data after each scan.

The walk follows libjpeg's reading of a stream: bytes before a marker's 0xFF are junk, runs of 0xFF
are fill, FF 00 outside a scan is junk too, and after a scan header (SOS) the entropy-coded data
runs to the next marker that is neither a restart marker (RST0-RST7) nor a stuffed FF 00.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final, NamedTuple

from app.media.containers import ByteData, MalformedContainer

SOI: Final = 0xD8
EOI: Final = 0xD9
SOS: Final = 0xDA
COM: Final = 0xFE
APP0: Final = 0xE0
APP1: Final = 0xE1
APP2: Final = 0xE2
APP14: Final = 0xEE
APP_MARKERS: Final = frozenset(range(0xE0, 0xF0))
# SOF0-SOF15 carry the frame size; C4 (DHT), C8 (JPG, reserved) and CC (DAC) share the range but don't.
SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Not a marker code (those are one byte): the pseudo-segment holding a scan's entropy-coded data.
ENTROPY_CODED_DATA: Final = 0x100

# TEM, RST0-RST7, SOI and EOI stand alone: no length field follows them.
_STANDALONE_MARKERS: Final = frozenset({0x01, *range(0xD0, 0xD8), SOI, EOI})
# Real files have a few dozen segments (a progressive scan adds two or three); a stream of tiny
# segments this long is hostile, and walking it in Python would cost more than it is worth.
MAX_SEGMENTS: Final = 10_000

# A single literal byte leads both patterns so `re` scans for it at C speed. Fill bytes (FF FF) are
# excluded from the code so the match lands on the last 0xFF of a run, right before the code.
_MARKER: Final = re.compile(rb"\xff[^\x00\xff]")
_MARKER_AFTER_SCAN: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


class Segment(NamedTuple):
    """One marker segment; offsets index the walked data."""

    marker: int
    start: int  # the 0xFF that opens the marker (fill and junk before it are not part of it)
    payload_start: int  # past the length field; equals `end` for standalone markers
    end: int


def iter_segments(data: ByteData) -> Iterator[Segment]:
    """Yield the segments after SOI, up to and including the first EOI.

    After each SOS comes an ENTROPY_CODED_DATA pseudo-segment; trailing fill bytes are not part of
    it. The entropy-coded data is only scanned when the walk goes on past its SOS, so a caller that
    stops at the scan header pays nothing for the image data.
    """
    size = len(data)
    if size < 2 or data[0] != 0xFF or data[1] != SOI:
        raise MalformedContainer("a JPEG starts with SOI (FF D8)")
    position = 2
    for _ in range(MAX_SEGMENTS):
        found = _MARKER.search(data, position)
        if found is None:
            raise MalformedContainer("the JPEG ends before its EOI marker")
        start = found.start()
        marker = data[start + 1]
        if marker in _STANDALONE_MARKERS:
            yield Segment(marker, start, start + 2, start + 2)
            if marker == EOI:
                return
            position = start + 2
            continue
        if start + 4 > size:
            raise MalformedContainer("a JPEG segment's length is cut off")
        length = (data[start + 2] << 8) | data[start + 3]
        end = start + 2 + length
        if length < 2 or end > size:
            raise MalformedContainer(f"a JPEG segment (marker {marker:#04x}) runs past the end of the data")
        yield Segment(marker, start, start + 4, end)
        position = end
        if marker == SOS:
            scan = _MARKER_AFTER_SCAN.search(data, end)
            if scan is None:
                raise MalformedContainer("the JPEG's entropy-coded data runs to the end of the data")
            scan_end = scan.start()
            if data[scan_end - 1] == 0xFF:
                # Fill before the marker; rstrip runs in C however long a hostile run of it is.
                scan_end = end + len(bytes(data[end:scan_end]).rstrip(b"\xff"))
            yield Segment(ENTROPY_CODED_DATA, end, end, scan_end)
            position = scan.start()
    raise MalformedContainer(f"the JPEG has more than {MAX_SEGMENTS} segments")
