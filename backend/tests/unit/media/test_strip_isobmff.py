"""AVIF and HEIC metadata stripping: Exif and XMP items and user data go; pictures, orientation and colour stay."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from app.media.containers import MalformedContainer
from app.media.formats import AVIF, HEIC
from app.media.metadata import strip_metadata
from tests.unit.media import heif_files, samples
from tests.unit.media.heif_files import Layout


def pillow_exif(orientation: int | None) -> bytes:
    """EXIF as Pillow writes it; pillow-heif and Pillow's AVIF plugin take the orientation out of it."""
    return b"Exif\0\0" + samples.exif_tiff(orientation=orientation)


def top_level_boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    boxes, position = [], 0
    while position < len(data):
        size, box_type = struct.unpack(">I4s", data[position : position + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[position + 8 : position + 16])
        size = size or len(data) - position
        boxes.append((box_type, position, size))
        position += size
    return boxes


def movie(data: bytes) -> bytes:
    _, position, size = next(entry for entry in top_level_boxes(data) if entry[0] == b"moov")
    return data[position : position + size]


def assert_stripped_losslessly(original: bytes, stripped: bytes) -> None:
    """No metadata left, the same pixels (every frame), and every box outside `meta` where it was."""
    assert samples.leaks(original) != []
    assert samples.leaks(stripped) == []
    assert samples.decoded_frames(stripped) == samples.decoded_frames(original)
    assert len(stripped) == len(original)
    offsets_in_use = {entry for entry in top_level_boxes(original) if entry[0] in (b"ftyp", b"moov", b"mdat")}
    assert offsets_in_use <= set(top_level_boxes(stripped))


def test_a_heic_loses_exif_and_xmp_but_keeps_its_rotation() -> None:
    original = samples.encode(samples.photo((64, 48)), "HEIF", exif=pillow_exif(6), xmp=samples.XMP, quality=90)

    stripped = strip_metadata(original, HEIC)

    assert_stripped_losslessly(original, stripped)
    with Image.open(io.BytesIO(stripped)) as image, Image.open(io.BytesIO(original)) as before:
        assert image.size == before.size == (48, 64)
        assert not image.info.get("exif")
        assert not image.info.get("xmp")


def test_an_avif_loses_exif_and_xmp_but_keeps_its_orientation() -> None:
    original = samples.encode(samples.photo((64, 48)), "AVIF", exif=pillow_exif(6), xmp=samples.XMP, quality=90)

    stripped = strip_metadata(original, AVIF)

    assert_stripped_losslessly(original, stripped)
    assert samples.shown_orientation(original) == samples.shown_orientation(stripped) == 6
    assert samples.exif_tags(stripped) == {0x0112: 6}
    assert "xmp" not in samples.info(stripped)


def test_an_animated_avif_keeps_every_frame_and_loses_its_track_metadata() -> None:
    frames = [samples.photo((32, 24), seed=seed) for seed in range(3)]
    # Pillow 13 crashes writing an orientation into an animated AVIF, so this one has none.
    original = samples.encode_frames(frames, "AVIF", exif=pillow_exif(None), xmp=samples.XMP, duration=50)

    stripped = strip_metadata(original, AVIF)

    assert_stripped_losslessly(original, stripped)
    assert len(samples.decoded_frames(stripped)) == 3
    assert samples.info(stripped).keys() <= {"duration", "timestamp"}
    # libavif lists the Exif and XMP items again in a `meta` inside the track: it is gone too.
    assert b"meta" in movie(original)
    assert b"meta" not in movie(stripped)


@pytest.fixture(scope="module")
def coded() -> heif_files.CodedImage:
    return heif_files.coded_image(samples.photo((40, 30)))


@pytest.mark.parametrize("layout", heif_files.LAYOUTS.values(), ids=heif_files.LAYOUTS.keys())
def test_every_table_version_and_box_layout_is_stripped(coded: heif_files.CodedImage, layout: Layout) -> None:
    original = heif_files.assemble(
        coded, samples.exif_tiff(orientation=6, thumbnail=b"SecretThumb"), samples.XMP, layout
    )
    assert "exif" in samples.info(original)

    stripped = strip_metadata(original, AVIF)

    assert_stripped_losslessly(original, stripped)
    assert not {"exif", "xmp"} & samples.info(stripped).keys()
    assert strip_metadata(stripped, AVIF) == stripped


def test_image_items_and_their_references_survive(coded: heif_files.CodedImage) -> None:
    layout = Layout(thumbnail=True, odd_reference=True)
    original = heif_files.assemble(coded, samples.exif_tiff(), samples.XMP, layout)

    stripped = strip_metadata(original, AVIF)

    assert stripped.count(b"av01") == original.count(b"av01")
    assert b"thmb" in stripped
    assert b"cdsc" not in stripped
    # The unknown reference from the picture now points at the thumbnail alone.
    xtra = stripped.index(b"xtra")
    assert struct.unpack(">HHH", stripped[xtra + 4 : xtra + 10]) == (heif_files.PRIMARY, 1, heif_files.THUMBNAIL)


def item_extents(avif: bytes) -> dict[int, tuple[int, int]]:
    """Each item's one extent (offset, length), from an iloc as libavif writes it (version 0, 4-byte fields)."""
    iloc = avif.index(b"iloc") - 4
    assert avif[iloc + 8 : iloc + 14] == b"\0\0\0\0\x44\x00"
    (count,) = struct.unpack(">H", avif[iloc + 14 : iloc + 16])
    extents = {}
    for entry in range(iloc + 16, iloc + 16 + 14 * count, 14):
        item_id, _, extent_count, offset, length = struct.unpack(">HHHII", avif[entry : entry + 14])
        assert extent_count == 1
        extents[item_id] = (offset, length)
    return extents


def with_extent(avif: bytes, item_id: int, offset: int, length: int) -> bytes:
    iloc = avif.index(b"iloc") - 4
    entry = iloc + 16 + 14 * sorted(item_extents(avif)).index(item_id)
    return avif[: entry + 6] + struct.pack(">II", offset, length) + avif[entry + 14 :]


def test_a_metadata_item_claiming_the_pictures_bytes_does_not_get_them_zeroed() -> None:
    frames = [samples.photo((32, 24), seed=seed) for seed in range(3)]
    animated = samples.encode_frames(frames, "AVIF", exif=pillow_exif(None), duration=50)
    # The Exif item now spans the primary image and every frame after it, to the end of the file.
    picture_at, _ = item_extents(animated)[heif_files.PRIMARY]
    original = with_extent(animated, heif_files.EXIF_ITEM, picture_at, len(animated) - picture_at)

    stripped = strip_metadata(original, AVIF)

    assert samples.decoded_frames(stripped) == samples.decoded_frames(animated)
    assert "exif" not in samples.info(stripped)


def test_a_file_without_metadata_comes_out_unchanged() -> None:
    original = samples.encode(samples.photo(), "AVIF")

    assert strip_metadata(original, AVIF) == original


def test_stripping_twice_changes_nothing() -> None:
    once = strip_metadata(samples.encode(samples.photo(), "HEIF", exif=pillow_exif(3), xmp=samples.XMP), HEIC)

    assert strip_metadata(once, HEIC) == once


@pytest.mark.parametrize("cut", [7, 30, -1])
def test_a_file_cut_short_is_malformed(cut: int) -> None:
    avif = samples.encode(samples.photo(), "AVIF", exif=pillow_exif(6))

    with pytest.raises(MalformedContainer):
        strip_metadata(avif[:cut], AVIF)


def test_a_box_larger_than_the_file_is_malformed() -> None:
    avif = samples.encode(samples.photo(), "AVIF")
    broken = avif + struct.pack(">I4s", 1_000, b"free")

    with pytest.raises(MalformedContainer):
        strip_metadata(broken, AVIF)
