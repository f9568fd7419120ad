"""The EXIF orientation is read as Pillow reads it, and written back as a minimal EXIF block."""

from __future__ import annotations

import struct
import warnings

import pytest
from PIL import Image

from app.media.metadata.exif import exif_orientation, orientation_only_exif
from tests.unit.media import samples


def pillow_orientation(tiff: bytes) -> int | None:
    """The orientation Pillow's exif_transpose would apply, or None when it would apply none."""
    exif = Image.Exif()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about the very quirks under test
        exif.load(tiff)
        value = exif.get(0x0112)
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def ifd0(entries: list[tuple[int, int, int, bytes]], order: str = ">", tail: bytes = b"") -> bytes:
    """A TIFF whose IFD0 holds `entries` (tag, type, count, 4 value bytes) as given, quirks and all."""
    header = (b"MM\0*" if order == ">" else b"II*\0") + struct.pack(order + "I", 8)
    table = struct.pack(order + "H", len(entries)) + b"".join(
        struct.pack(order + "HHI", tag, kind, count) + value for tag, kind, count, value in entries
    )
    return header + table + b"\0\0\0\0" + tail


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("byte_order", ["MM", "II"])
@pytest.mark.parametrize("prefix", [b"", b"Exif\0\0", b"Exif\0\0Exif\0\0"])
def test_the_orientation_is_read_from_camera_exif(orientation: int, byte_order: str, prefix: bytes) -> None:
    tiff = samples.exif_tiff(orientation=orientation, thumbnail=samples.exif_thumbnail(), byte_order=byte_order)

    assert exif_orientation(prefix + tiff) == orientation


QUIRKS = {
    "long": [(0x0112, 4, 1, struct.pack(">I", 6))],
    "signed-short": [(0x0112, 8, 1, struct.pack(">hH", 5, 0))],
    "byte-reads-as-bytes": [(0x0112, 1, 1, b"\x06\0\0\0")],
    "rational": [(0x0112, 5, 1, struct.pack(">I", 26))],
    "two-values": [(0x0112, 3, 2, struct.pack(">HH", 7, 3))],
    "no-values": [(0x0112, 3, 0, b"\0\0\0\0")],
    "first-of-two-wins": [(0x0112, 3, 1, b"\0\x03\0\0"), (0x0112, 3, 1, b"\0\x06\0\0")],
    "unknown-type-skipped": [(0x0112, 99, 1, b"\0\x03\0\0"), (0x0112, 3, 1, b"\0\x06\0\0")],
    "out-of-range": [(0x0112, 3, 1, b"\0\x09\0\0")],
    "zero": [(0x0112, 3, 1, b"\0\0\0\0")],
    "other-tags-only": [(0x0100, 3, 1, b"\0\x06\0\0")],
    "values-past-the-end": [(0x0112, 3, 4, struct.pack(">I", 1_000))],
}


@pytest.mark.parametrize("entries", QUIRKS.values(), ids=QUIRKS.keys())
def test_quirky_encodings_read_as_pillow_reads_them(entries: list[tuple[int, int, int, bytes]]) -> None:
    tiff = ifd0(entries)

    assert exif_orientation(tiff) == pillow_orientation(b"Exif\0\0" + tiff)


def test_values_stored_after_the_ifd_are_read_from_there() -> None:
    tiff = ifd0([(0x0112, 3, 3, struct.pack(">I", 26))], tail=struct.pack(">HHH", 4, 1, 1))

    assert exif_orientation(tiff) == pillow_orientation(tiff) == 4


HOSTILE = {
    "empty": b"",
    "not-tiff": b"JFIF\0\0\0\0\0\0\0\0",
    "header-only": b"MM\0*",
    "ifd-past-the-end": b"MM\0*\xff\xff\xff\xff",
    "ifd-at-the-last-byte": b"MM\0*\0\0\0\x08\0",
    "count-larger-than-data": b"MM\0*\0\0\0\x08\xff\xff" + b"\x01\x12\0\x03\0\0\0\x01\0\x06",
    "ifd-pointing-at-itself": b"II*\0\x04\0\0\0",
}


@pytest.mark.parametrize("data", HOSTILE.values(), ids=HOSTILE.keys())
def test_broken_or_hostile_exif_has_no_orientation(data: bytes) -> None:
    assert exif_orientation(data) is None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_orientation_only_block_holds_that_orientation_and_nothing_else(orientation: int) -> None:
    block = orientation_only_exif(orientation)

    exif = Image.Exif()
    exif.load(b"Exif\0\0" + block)
    assert dict(exif) == {0x0112: orientation}
    assert exif_orientation(block) == orientation
    assert len(block) == 26


@pytest.mark.parametrize("orientation", [0, 9, -1])
def test_an_orientation_outside_1_to_8_cannot_be_written(orientation: int) -> None:
    with pytest.raises(ValueError, match="1 to 8"):
        orientation_only_exif(orientation)
