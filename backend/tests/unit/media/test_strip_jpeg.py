"""JPEG metadata stripping: what a camera, an editor or a phone leaves in a file goes; the picture stays."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from app.media.containers import MalformedContainer
from app.media.formats import JPEG
from app.media.metadata import strip_metadata
from tests.unit.media import samples

# The made-up MPF segment in `camera_jpeg` makes Pillow warn when it opens the original.
pytestmark = pytest.mark.filterwarnings("ignore:.*(MPO|EXIF).*:UserWarning")


def strip(data: bytes) -> bytes:
    return strip_metadata(data, JPEG)


def camera_jpeg(orientation: int | None = 6, **exif_options: Any) -> bytes:
    """A JPEG with everything a camera and an editor add, plus an ICC profile and a comment."""
    base = samples.encode(samples.photo((64, 48)), "JPEG", quality=90, icc_profile=samples.srgb_profile())
    # Pillow's JFIF gives way to one that carries a thumbnail, as old cameras wrote it.
    base = samples.with_jfif(base, samples.jfif_segment(thumbnail_size=(4, 3)))
    tiff = samples.exif_tiff(orientation=orientation, thumbnail=samples.exif_thumbnail(), **exif_options)
    return samples.with_segments(
        base,
        [
            samples.segment(0xE0, b"JFXX\0\x10" + samples.THUMBNAIL_MARKER),
            samples.exif_segment(tiff),
            samples.xmp_segment(),
            samples.segment(0xE1, b"http://ns.adobe.com/xmp/extension/\0" + b"0" * 32 + samples.XMP),
            samples.segment(0xE2, b"MPF\0II*\0" + samples.MODEL),
            samples.segment(0xE2, b"FPXR\0\0" + samples.MODEL),
            samples.iptc_segment(),
            samples.segment(0xEB, b"JP\0\x01jumbc2pa" + samples.MODEL),
            samples.segment(0xEC, b"Ducky" + samples.COMMENT),
            samples.segment(0xEF, samples.COMMENT),
            samples.segment(0xFE, samples.COMMENT),
        ],
    )


def test_camera_metadata_is_gone_and_the_picture_is_unchanged() -> None:
    original = camera_jpeg(orientation=6)

    stripped = strip(original)

    assert samples.leaks(original) != []
    assert samples.leaks(stripped) == []
    assert samples.exif_tags(stripped) == {0x0112: 6}
    reported = samples.info(stripped)
    assert not {"xmp", "photoshop", "comment", "flashpix", "mp"} & reported.keys()
    assert reported["icc_profile"] == samples.info(original)["icc_profile"]
    assert samples.shown_orientation(stripped) == samples.shown_orientation(original) == 6
    assert samples.decoded_frames(stripped) == samples.decoded_frames(original)


def test_only_jfif_icc_exif_orientation_and_the_image_segments_remain() -> None:
    stripped = strip(camera_jpeg(orientation=6))

    markers = samples.jpeg_segment_markers(stripped)

    assert [marker for marker in markers if 0xE0 <= marker <= 0xEF or marker == 0xFE] == [0xE0, 0xE1, 0xE2]
    assert {0xDB, 0xC0, 0xC4} <= set(markers)


def test_the_jfif_thumbnail_goes_but_the_density_stays() -> None:
    jfif = samples.jfif_segment(thumbnail_size=(8, 8), density=(300, 300))
    original = samples.with_jfif(samples.encode(samples.photo(), "JPEG"), jfif)

    stripped = strip(original)

    assert samples.THUMBNAIL_MARKER in original
    assert samples.THUMBNAIL_MARKER not in stripped
    assert stripped[2:20] == samples.jfif_segment(density=(300, 300))
    assert samples.info(stripped)["dpi"] == (300, 300)
    assert samples.decoded_frames(stripped) == samples.decoded_frames(original)


@pytest.mark.parametrize("orientation", range(2, 9))
@pytest.mark.parametrize("byte_order", ["MM", "II"])
def test_every_orientation_is_kept_in_either_byte_order(orientation: int, byte_order: str) -> None:
    original = camera_jpeg(orientation=orientation, byte_order=byte_order)

    stripped = strip(original)

    assert samples.shown_orientation(stripped) == orientation
    assert samples.exif_tags(stripped) == {0x0112: orientation}


@pytest.mark.parametrize("orientation", [None, 1])
def test_without_a_rotation_no_exif_is_left_at_all(orientation: int | None) -> None:
    stripped = strip(camera_jpeg(orientation=orientation))

    assert b"Exif" not in stripped
    assert samples.exif_tags(stripped) == {}


def test_the_first_exif_segment_decides_the_orientation_as_pillow_reads_it() -> None:
    jpeg = samples.encode(samples.photo(), "JPEG")
    original = samples.with_segments(
        jpeg,
        [
            samples.exif_segment(samples.exif_tiff(orientation=3)),
            samples.exif_segment(samples.exif_tiff(orientation=6)),
        ],
    )

    stripped = strip(original)

    assert samples.shown_orientation(original) == 3
    assert samples.shown_orientation(stripped) == 3
    assert stripped.count(b"Exif\0\0") == 1


def test_an_icc_profile_split_over_many_segments_is_kept_whole_and_in_order() -> None:
    profile = samples.srgb_profile()
    jpeg = samples.encode(samples.photo(), "JPEG")
    original = samples.with_segments(jpeg, [samples.xmp_segment(), *samples.icc_segments(profile, chunk_size=100)])

    stripped = strip(original)

    assert samples.info(stripped)["icc_profile"] == profile
    assert samples.jpeg_segment_markers(stripped).count(0xE2) == len(profile) // 100 + 1


def test_a_cmyk_jpeg_keeps_its_adobe_segment_and_colours() -> None:
    original = samples.with_segments(
        samples.encode(samples.photo(mode="CMYK"), "JPEG", quality=95), [samples.exif_segment(samples.exif_tiff())]
    )

    stripped = strip(original)

    assert 0xEE in samples.jpeg_segment_markers(stripped)
    assert samples.leaks(stripped) == []
    assert samples.decoded_frames(stripped) == samples.decoded_frames(original)


@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"restart_marker_blocks": 1}, {"subsampling": 0, "quality": 100}],
    ids=["baseline", "progressive", "restart-markers", "4:4:4"],
)
def test_a_file_without_metadata_comes_out_unchanged(options: dict[str, object]) -> None:
    original = samples.encode(samples.photo((40, 30)), "JPEG", **options)

    assert strip(original) == original


def test_stripping_twice_changes_nothing() -> None:
    once = strip(camera_jpeg(orientation=8))

    assert strip(once) == once


def test_an_mpo_keeps_its_primary_image_only() -> None:
    frames = [samples.photo(seed=1), samples.photo(seed=2)]
    original = samples.encode_frames(frames, "MPO")

    stripped = strip(original)

    with Image.open(io.BytesIO(stripped)) as image:
        assert image.format == "JPEG"
        assert getattr(image, "n_frames", 1) == 1
    assert samples.decoded_frames(stripped) == samples.decoded_frames(original)[:1]


def test_bytes_after_the_end_of_image_are_dropped() -> None:
    original = samples.encode(samples.photo(), "JPEG")

    assert strip(original + b"\xff\xd8" + samples.COMMENT * 10) == original


def test_junk_and_fill_bytes_between_segments_are_dropped() -> None:
    clean = samples.encode(samples.photo(), "JPEG", progressive=True)
    # Junk before a marker, fill bytes (FF FF) before a marker, a stuffed FF 00 outside any scan.
    dqt = clean.index(b"\xff\xdb")
    sof = clean.index(b"\xff\xc2")
    eoi = len(clean) - 2
    noisy = (
        clean[:dqt] + b"junk\xff\x00" + clean[dqt:sof] + b"\xff\xff\xff" + clean[sof:eoi] + b"\xff\xff" + clean[eoi:]
    )

    stripped = strip(noisy)

    assert stripped == clean
    assert samples.decoded_frames(stripped) == samples.decoded_frames(clean)


def test_a_file_without_end_of_image_is_malformed() -> None:
    jpeg = samples.encode(samples.photo(), "JPEG")

    with pytest.raises(MalformedContainer):
        strip(jpeg[:-2])


def test_a_segment_running_past_the_end_is_malformed() -> None:
    jpeg = samples.encode(samples.photo(), "JPEG")

    with pytest.raises(MalformedContainer):
        strip(jpeg[:2] + b"\xff\xe1\xff\xf0Exif\0\0" + jpeg[2:200])
