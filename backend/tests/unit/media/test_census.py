"""The census reads sizes and frame counts from the headers as decoders will see them, cheaply and safely."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image, ImageSequence

from app.media import formats
from app.media.census import Census, take_census
from tests.unit.media import heif_files, samples

MAX_FRAMES = 100


def census(data: bytes, content_type: str, max_frames: int = MAX_FRAMES) -> Census | None:
    return take_census(data, content_type, max_frames=max_frames)


def pillow_census(data: bytes) -> Census:
    """What Pillow does with the file: its size, and the size each frame is decoded at."""
    with Image.open(io.BytesIO(data)) as image:
        sizes = [frame.size for frame in ImageSequence.Iterator(image)]
        return Census(image.size[0], image.size[1], len(sizes), sum(width * height for width, height in sizes))


@pytest.mark.parametrize(
    ("image_format", "content_type", "options"),
    [
        ("JPEG", formats.JPEG, {}),
        ("JPEG", formats.JPEG, {"progressive": True}),
        ("PNG", formats.PNG, {}),
        ("GIF", formats.GIF, {}),
        ("WEBP", formats.WEBP, {"quality": 80}),
        ("WEBP", formats.WEBP, {"lossless": True}),
        ("WEBP", formats.WEBP, {"quality": 80, "exif": samples.exif_tiff()}),
        ("AVIF", formats.AVIF, {}),
    ],
)
def test_still_images_report_their_size_and_one_frame(
    image_format: str, content_type: str, options: dict[str, object]
) -> None:
    data = samples.encode(samples.photo((123, 45)), image_format, **options)

    assert census(data, content_type) == Census(123, 45, 1, 123 * 45)


def test_a_jpeg_size_is_found_past_junk_and_metadata() -> None:
    jpeg = samples.encode(samples.photo((70, 50)), "JPEG")
    noisy = jpeg[:2] + b"junk\xff\x00" + samples.exif_segment(samples.exif_tiff()) + b"\xff\xff" + jpeg[2:]

    assert census(noisy, formats.JPEG) == Census(70, 50, 1, 3500)


def test_a_jpeg_whose_height_waits_for_a_dnl_marker_has_no_usable_size() -> None:
    jpeg = bytearray(samples.encode(samples.photo((70, 50)), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 7] = b"\0\0"

    assert census(bytes(jpeg), formats.JPEG) is None


def test_an_mpo_counts_as_its_primary_image() -> None:
    mpo = samples.encode_frames([samples.photo((30, 20)), samples.photo((300, 200))], "MPO")

    assert census(mpo, formats.JPEG) == Census(30, 20, 1, 600)


def test_an_apng_reports_the_frames_pillow_decodes() -> None:
    frames = [samples.photo((20, 10), seed=seed) for seed in range(5)]
    apng = samples.encode_frames(frames, "PNG")

    assert census(apng, formats.PNG) == pillow_census(apng) == Census(20, 10, 5, 1000)


def apng_declaring(frames: int) -> bytes:
    png = samples.encode(samples.photo((20, 10)), "PNG")
    return samples.with_png_chunks(png, [samples.png_chunk(b"acTL", struct.pack(">II", frames, 0))])


def test_an_apng_declaring_100000_frames_is_counted_up_to_the_limit() -> None:
    assert census(apng_declaring(100_000), formats.PNG) == Census(20, 10, MAX_FRAMES + 1, 200 * (MAX_FRAMES + 1))


def test_an_apng_declaring_no_frames_is_shown_as_its_default_image() -> None:
    assert census(apng_declaring(0), formats.PNG) == Census(20, 10, 1, 200)


def test_png_sizes_come_from_ihdr_even_when_the_rest_is_missing() -> None:
    png = samples.encode(samples.photo((20, 10)), "PNG")

    assert census(png[:33], formats.PNG) == Census(20, 10, 1, 200)


def gif_frames(count: int, *, screen: tuple[int, int], frame: tuple[int, int, int, int] = (0, 0, 1, 1)) -> bytes:
    """A GIF built byte by byte: `count` frames placed at (left, top, width, height), ~15 bytes each."""
    return gif_with_frames(screen, [frame] * count)


def gif_with_frames(screen: tuple[int, int], frames: list[tuple[int, int, int, int]]) -> bytes:
    header = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    # LZW with 2-bit codes: clear, pixel 1, end of information (a whole 1x1 frame).
    image_data = b"\x02\x02\x4c\x01\x00"
    return header + b"".join(b"," + struct.pack("<HHHHB", *frame, 0) + image_data for frame in frames) + b";"


def test_a_gif_with_100000_frames_is_counted_up_to_the_limit() -> None:
    gif = gif_frames(100_000, screen=(2, 2))

    assert census(gif, formats.GIF, max_frames=1000) == Census(2, 2, 1001, 4 * 1001)


def test_a_tiny_gif_whose_frames_declare_7000x7000_reports_the_pixels_decoded() -> None:
    gif = gif_frames(3, screen=(1, 1), frame=(0, 0, 7000, 7000))

    assert len(gif) < 100
    assert census(gif, formats.GIF) == Census(7000, 7000, 3, 3 * 7000 * 7000)


def test_a_gif_canvas_grows_with_a_frame_that_reaches_past_it_as_pillow_grows_it() -> None:
    grows = gif_with_frames((4, 4), [(0, 0, 1, 1), (1, 1, 1, 1), (7, 1, 1, 1), (0, 0, 1, 1)])

    assert census(grows, formats.GIF) == pillow_census(grows) == Census(8, 4, 4, 16 + 16 + 32 + 32)


def test_an_animated_webp_reports_its_canvas_and_frames() -> None:
    frames = [samples.photo((30, 20), seed=seed) for seed in range(5)]
    webp = samples.encode_frames(frames, "WEBP", lossless=True)

    assert census(webp, formats.WEBP) == pillow_census(webp) == Census(30, 20, 5, 3000)
    assert census(webp, formats.WEBP, max_frames=2) == Census(30, 20, 3, 1800)


def test_a_webp_canvas_size_is_read_from_vp8x_as_24_bits() -> None:
    webp = bytearray(samples.encode(samples.photo((30, 20)), "WEBP", exif=samples.exif_tiff()))
    assert webp[12:16] == b"VP8X"
    webp[24:30] = (70_000 - 1).to_bytes(3, "little") + (50_000 - 1).to_bytes(3, "little")

    assert census(bytes(webp), formats.WEBP) == Census(70_000, 50_000, 1, 70_000 * 50_000)


def test_an_avif_reports_the_primary_item_size() -> None:
    avif = samples.encode(samples.photo((64, 48)), "AVIF")

    assert census(avif, formats.AVIF) == Census(64, 48, 1, 64 * 48)


def test_a_heic_reports_its_cropped_size_before_rotation_and_what_decoding_it_costs() -> None:
    # x265 codes the picture 100x64 (ispe) and a `clap` property crops it to 100x20 for display;
    # the rotation (irot, from the EXIF orientation) is applied after, so it does not count here.
    exif = Image.Exif()
    exif[0x0112] = 6
    heic = samples.encode(samples.photo((100, 20)), "HEIF", exif=exif.tobytes())

    found = census(heic, formats.HEIC)

    assert found == Census(100, 20, 1, 100 * 64, coded_size=(100, 64))
    assert found.frame_pixels == 100 * 64


@pytest.mark.parametrize("layout", heif_files.LAYOUTS.values(), ids=heif_files.LAYOUTS.keys())
def test_the_primary_item_size_is_found_whatever_the_table_versions_and_box_sizes(layout: heif_files.Layout) -> None:
    avif = heif_files.assemble(
        heif_files.coded_image(samples.photo((40, 30))), samples.exif_tiff(), samples.XMP, layout
    )

    assert census(avif, formats.AVIF) == Census(40, 30, 1, 1200)


def test_an_ispe_patched_to_65535_squared_is_believed() -> None:
    avif = bytearray(samples.encode(samples.photo((64, 48)), "AVIF"))
    ispe = avif.index(b"ispe")
    avif[ispe + 8 : ispe + 16] = struct.pack(">II", 65535, 65535)

    assert census(bytes(avif), formats.AVIF) == Census(65535, 65535, 1, 65535 * 65535)


def test_an_animated_avif_reports_its_samples_as_frames() -> None:
    frames = [samples.photo((32, 24), seed=seed) for seed in range(3)]
    avif = samples.encode_frames(frames, "AVIF")

    assert census(avif, formats.AVIF) == Census(32, 24, 3, 3 * 32 * 24)
    assert census(avif, formats.AVIF, max_frames=1) == Census(32, 24, 2, 2 * 32 * 24)


GARBAGE = [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n" + b"\0" * 30, b"GIF89a", b"RIFF\0\0\0\0WEBPVP8X", b"\0" * 64]


@pytest.mark.parametrize("content_type", formats.ALL_CONTENT_TYPES)
@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_has_no_census(content_type: str, garbage: bytes) -> None:
    assert census(garbage, content_type) is None
