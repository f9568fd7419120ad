"""PNG and APNG metadata stripping: text, times, EXIF and private chunks go; pixels, colour and animation stay."""

from __future__ import annotations

import struct
import zlib

import pytest
from PIL import PngImagePlugin

from app.media.containers import MalformedContainer
from app.media.formats import PNG
from app.media.metadata import strip_metadata
from tests.unit.media import samples

KEPT_TYPES = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"pHYs"}
KEPT_TYPES |= {b"cICP", b"mDCV", b"cLLI", b"bKGD", b"hIST", b"acTL", b"fcTL", b"fdAT", b"eXIf"}
TEXT_KEYS = {"Comment", "Author", "Software", "XML:com.adobe.xmp"}


def strip(data: bytes) -> bytes:
    return strip_metadata(data, PNG)


def text_chunks() -> PngImagePlugin.PngInfo:
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", samples.COMMENT.decode())
    text.add_text("Author", samples.MODEL.decode(), zip=True)
    text.add_itxt("XML:com.adobe.xmp", samples.XMP.decode())
    text.add_itxt("Software", samples.MAKE.decode(), zip=True)
    return text


def extra_chunks() -> list[bytes]:
    """tIME, a suggested palette, a private chunk and the chunks that describe colour."""
    return [
        samples.png_chunk(b"tIME", struct.pack(">HBBBBB", 2019, 7, 4, 12, 34, 56)),
        samples.png_chunk(b"sPLT", b"SecretPerson palette\0\x08" + b"\0" * 6),
        samples.png_chunk(b"prVt", samples.MODEL),
        samples.png_chunk(b"gAMA", struct.pack(">I", 45455)),
        samples.png_chunk(b"sBIT", b"\x08\x08\x08\x08"),
        samples.png_chunk(b"bKGD", struct.pack(">HHH", 1, 2, 3)),
    ]


def camera_png(orientation: int | None = 6) -> bytes:
    exif = samples.exif_tiff(orientation=orientation)
    png = samples.encode(
        samples.photo(mode="RGBA"),
        "PNG",
        pnginfo=text_chunks(),
        exif=b"Exif\0\0" + exif,
        icc_profile=samples.srgb_profile(),
        dpi=(300, 300),
    )
    return samples.with_png_chunks(png, extra_chunks()) + b"trailing " + samples.COMMENT


def test_text_exif_time_and_private_chunks_are_gone_and_the_picture_is_unchanged() -> None:
    original = camera_png(orientation=6)

    stripped = strip(original)

    assert samples.leaks(stripped) == []
    assert set(samples.png_chunk_types(stripped)) <= KEPT_TYPES
    assert samples.exif_tags(stripped) == {0x0112: 6}
    reported = samples.info(stripped)
    assert not TEXT_KEYS & reported.keys()
    assert reported["icc_profile"] == samples.info(original)["icc_profile"]
    assert reported["dpi"] == samples.info(original)["dpi"]
    assert reported["gamma"] == samples.info(original)["gamma"]
    assert samples.shown_orientation(stripped) == 6
    assert samples.decoded_frames(stripped) == samples.decoded_frames(original)


def test_the_exif_chunk_is_replaced_where_it_was() -> None:
    original = camera_png(orientation=3)

    types_before = [kind for kind in samples.png_chunk_types(original) if kind in KEPT_TYPES]
    types_after = samples.png_chunk_types(strip(original))

    assert types_after == types_before


@pytest.mark.parametrize("orientation", [None, 1])
def test_without_a_rotation_no_exif_chunk_is_left(orientation: int | None) -> None:
    stripped = strip(camera_png(orientation=orientation))

    assert b"eXIf" not in samples.png_chunk_types(stripped)
    assert samples.exif_tags(stripped) == {}


def test_every_apng_frame_decodes_the_same() -> None:
    frames = [samples.photo(mode="RGBA", seed=seed) for seed in range(4)]
    original = samples.with_png_chunks(
        samples.encode_frames(frames, "PNG", pnginfo=text_chunks(), duration=[40, 80, 40, 120], loop=3),
        extra_chunks(),
    )

    stripped = strip(original)

    assert samples.leaks(stripped) == []
    assert {b"acTL", b"fcTL", b"fdAT"} <= set(samples.png_chunk_types(stripped))
    assert len(samples.decoded_frames(stripped)) == 4
    assert samples.decoded_frames(stripped) == samples.decoded_frames(original)
    assert samples.info(stripped)["loop"] == 3


@pytest.mark.parametrize(
    ("mode", "options"),
    [("RGB", {}), ("RGBA", {}), ("P", {"transparency": 3}), ("L", {"bits": 4}), ("I;16", {})],
)
def test_a_file_without_metadata_comes_out_unchanged(mode: str, options: dict[str, object]) -> None:
    original = samples.encode(samples.photo(mode=mode), "PNG", **options)

    assert strip(original) == original
    assert strip(original + b"appended") == original


def test_a_corrupt_compressed_text_chunk_is_dropped_unread() -> None:
    bomb = samples.png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * 10_000_000)[:-50])
    original = samples.encode(samples.photo(), "PNG")

    assert strip(samples.with_png_chunks(original, [bomb])) == original


def test_stripping_twice_changes_nothing() -> None:
    once = strip(camera_png(orientation=5))

    assert strip(once) == once


def test_ihdr_must_come_first() -> None:
    png = samples.encode(samples.photo(), "PNG")
    text = samples.png_chunk(b"tEXt", b"Comment\0" + samples.COMMENT)

    with pytest.raises(MalformedContainer):
        strip(png[:8] + text + png[8:])


@pytest.mark.parametrize("cut", [-12, -1, 40])
def test_a_file_cut_short_is_malformed(cut: int) -> None:
    png = samples.encode(samples.photo(), "PNG")

    with pytest.raises(MalformedContainer):
        strip(png[:cut])
