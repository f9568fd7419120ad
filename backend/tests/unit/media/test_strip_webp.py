"""WebP metadata stripping: EXIF (but the orientation), XMP and unknown chunks go; frames and colour stay."""

from __future__ import annotations

import struct

import pytest

from app.media.containers import MalformedContainer
from app.media.formats import WEBP
from app.media.metadata import strip_metadata
from tests.unit.media import samples

EXIF_FLAG = 0x08
XMP_FLAG = 0x04
ICC_FLAG = 0x20


def strip(data: bytes) -> bytes:
    return strip_metadata(data, WEBP)


def vp8x_flags(webp: bytes) -> int:
    assert webp[12:16] == b"VP8X"
    return webp[20]


def camera_webp(orientation: int | None = 6, **options: object) -> bytes:
    return samples.encode(
        samples.photo(mode="RGBA"),
        "WEBP",
        exif=samples.exif_tiff(orientation=orientation),
        xmp=samples.XMP,
        icc_profile=samples.srgb_profile(),
        **options,
    )


@pytest.mark.parametrize("options", [{"quality": 80}, {"lossless": True}], ids=["lossy", "lossless"])
def test_exif_and_xmp_are_gone_and_the_picture_is_unchanged(options: dict[str, object]) -> None:
    original = camera_webp(orientation=6, **options)

    stripped = strip(original)

    assert samples.leaks(original) != []
    assert samples.leaks(stripped) == []
    assert samples.exif_tags(stripped) == {0x0112: 6}
    reported = samples.info(stripped)
    assert "xmp" not in reported
    assert reported["icc_profile"] == samples.info(original)["icc_profile"]
    assert samples.shown_orientation(stripped) == 6
    assert samples.decoded_frames(stripped) == samples.decoded_frames(original)
    assert vp8x_flags(stripped) & (EXIF_FLAG | XMP_FLAG | ICC_FLAG) == EXIF_FLAG | ICC_FLAG


@pytest.mark.parametrize("orientation", [None, 1])
def test_without_a_rotation_no_exif_chunk_and_no_exif_flag_are_left(orientation: int | None) -> None:
    stripped = strip(camera_webp(orientation=orientation))

    assert b"EXIF" not in samples.webp_chunk_types(stripped)
    assert vp8x_flags(stripped) & (EXIF_FLAG | XMP_FLAG) == 0
    assert samples.exif_tags(stripped) == {}


def test_an_exif_chunk_written_with_the_jpeg_prefix_still_gives_its_orientation() -> None:
    plain = samples.encode(samples.photo(), "WEBP", icc_profile=samples.srgb_profile())
    exif = samples.riff_chunk(b"EXIF", b"Exif\0\0" + samples.exif_tiff(orientation=8))
    original = samples.with_webp_chunks(plain, [exif])
    original = original[:20] + bytes([original[20] | EXIF_FLAG]) + original[21:]

    stripped = strip(original)

    assert samples.shown_orientation(stripped) == 8
    assert samples.leaks(stripped) == []


def test_unknown_chunks_are_dropped_and_the_riff_size_fixed() -> None:
    original = samples.with_webp_chunks(camera_webp(), [samples.riff_chunk(b"SECR", samples.MODEL)])

    stripped = strip(original)

    assert b"SECR" not in samples.webp_chunk_types(stripped)
    assert struct.unpack("<I", stripped[4:8])[0] == len(stripped) - 8


def test_every_animation_frame_decodes_the_same() -> None:
    frames = [samples.photo(mode="RGBA", seed=seed) for seed in range(3)]
    original = samples.encode_frames(
        frames, "WEBP", duration=[50, 100, 70], loop=2, exif=samples.exif_tiff(orientation=3), xmp=samples.XMP
    )

    stripped = strip(original)

    assert samples.leaks(stripped) == []
    assert {b"ANIM", b"ANMF"} <= set(samples.webp_chunk_types(stripped))
    assert len(samples.decoded_frames(stripped)) == 3
    assert samples.decoded_frames(stripped) == samples.decoded_frames(original)
    assert samples.info(stripped)["loop"] == 2
    assert samples.shown_orientation(stripped) == 3


@pytest.mark.parametrize("options", [{"quality": 80}, {"lossless": True}], ids=["lossy", "lossless"])
def test_a_simple_file_comes_out_unchanged_but_for_what_follows_the_bitstream(options: dict[str, object]) -> None:
    original = samples.encode(samples.photo(), "WEBP", **options)
    assert original[12:16] in (b"VP8 ", b"VP8L")

    assert strip(original) == original
    assert strip(original + b"appended") == original
    assert strip(samples.with_webp_chunks(original, [samples.riff_chunk(b"EXIF", samples.exif_tiff())])) == original


def test_stripping_twice_changes_nothing() -> None:
    once = strip(camera_webp(orientation=7))

    assert strip(once) == once


@pytest.mark.parametrize("cut", [11, 20, -1, -9])
def test_a_file_cut_short_is_malformed(cut: int) -> None:
    webp = camera_webp()

    with pytest.raises(MalformedContainer):
        strip(webp[:cut])


def test_a_chunk_larger_than_the_riff_is_malformed() -> None:
    webp = camera_webp()
    broken = webp[:16] + struct.pack("<I", len(webp)) + webp[20:]

    with pytest.raises(MalformedContainer):
        strip(broken)
