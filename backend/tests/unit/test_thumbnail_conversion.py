"""Thumbnails of hand-made images: every mode becomes one a browser shows, at the right size, without metadata.

At the service's size each is rendered both ways the service renders it (from the stored bytes and
from the frame upload validation decoded), and the two must be the same file. The bytes are used as
stored with stripping off, so the thumbnailer alone must cope with their metadata.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import ExifTags, Image, PngImagePlugin

from tests.conftest import corpus_bytes
from tests.image_checks import revealing_metadata
from tests.unit.thumbnail_checks import SAME_PICTURE, encode, mean_difference, noisy_photo, render, rendered_image


def bands(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """The band values of one pixel of a multi-band image."""
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def test_large_jpeg_is_reduced_to_fit() -> None:
    picture = noisy_photo((4000, 3000))
    result, output = render(encode(picture, "JPEG", quality=90))

    assert (result.content_type, output.size) == ("image/jpeg", (300, 225))
    reference = picture.resize((300, 225), Image.Resampling.LANCZOS)
    assert mean_difference(output, reference) < SAME_PICTURE


def test_large_jpeg_with_orientation_6_is_reduced_to_portrait() -> None:
    stored = noisy_photo((4000, 3000))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6

    output = rendered_image(encode(stored, "JPEG", quality=90, exif=exif))

    assert output.size == (225, 300)
    reference = stored.transpose(Image.Transpose.ROTATE_270).resize((225, 300), Image.Resampling.LANCZOS)
    assert mean_difference(output, reference) < SAME_PICTURE


@pytest.mark.parametrize(
    ("stored_size", "orientation", "expected_size"),
    [((4000, 100), 1, (300, 8)), ((3000, 200), 6, (20, 300)), ((200, 3000), 8, (300, 20))],
)
def test_very_wide_jpeg_keeps_its_short_side(
    stored_size: tuple[int, int], orientation: int, expected_size: tuple[int, int]
) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation

    output = rendered_image(encode(noisy_photo(stored_size), "JPEG", exif=exif))

    assert output.size == expected_size


def test_max_side_is_configurable_and_never_upscales() -> None:
    assert rendered_image(corpus_bytes("hopper.jpg")).size == (128, 128)
    assert render(corpus_bytes("hopper.jpg"), max_side=64)[1].size == (64, 64)
    assert render(corpus_bytes("flower.jpg"), max_side=100)[1].size == (100, 75)


def test_grayscale_png_becomes_grayscale_jpeg() -> None:
    gradient = Image.linear_gradient("L").resize((400, 200))

    result, output = render(encode(gradient, "PNG"))

    assert (result.content_type, output.mode, output.size) == ("image/jpeg", "L", (300, 150))
    assert mean_difference(output, gradient.resize((300, 150), Image.Resampling.LANCZOS)) < 2


def test_transparent_png_keeps_its_alpha() -> None:
    picture = Image.new("RGBA", (400, 400), (200, 30, 30, 255))
    picture.paste((0, 0, 255, 0), (0, 0, 200, 400))

    result, output = render(encode(picture, "PNG"))

    assert (result.content_type, output.mode, output.size) == ("image/png", "RGBA", (300, 300))
    assert bands(output, (10, 150))[3] == 0
    assert bands(output, (290, 150)) == (200, 30, 30, 255)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    wide = Image.linear_gradient("L").resize((64, 64)).convert("I").point(lambda value: value * 257)
    data = encode(wide.convert("I;16"), "PNG")
    with Image.open(io.BytesIO(data)) as reopened:
        assert reopened.mode == "I;16"

    result, output = render(data)

    assert (result.content_type, output.mode) == ("image/jpeg", "L")
    # convert("L") would clip all but the darkest rows to 255.
    assert mean_difference(output, wide.point(lambda value: value / 257).convert("L")) < 2


def test_sixteen_bit_png_transparent_level_becomes_alpha() -> None:
    picture = Image.new("I;16", (32, 32), 40_000)
    # paste() with a plain int would fill I;16 with the low byte repeated, so paste an image.
    picture.paste(Image.new("I;16", (16, 32), 1_234), (0, 0))
    data = encode(picture, "PNG", transparency=1_234)

    result, output = render(data)

    assert (result.content_type, output.mode) == ("image/png", "LA")
    assert bands(output, (4, 4))[1] == 0
    # 40,000 of 65,535 is 156 of 255.
    assert bands(output, (28, 4)) == (156, 255)


def test_cmyk_jpeg_looks_like_its_rgb_twin() -> None:
    result, output = render(corpus_bytes("pil_sample_cmyk.jpg"))

    assert (result.content_type, output.mode) == ("image/jpeg", "RGB")
    assert mean_difference(output, rendered_image(corpus_bytes("pil_sample_rgb.jpg"))) < SAME_PICTURE


def test_cmyk_red_stays_red() -> None:
    red = Image.new("CMYK", (50, 40), (0, 255, 255, 0))

    output = rendered_image(encode(red, "JPEG", quality=95))

    red_level, green_level, blue_level = bands(output, (25, 20))
    assert red_level > 220
    assert green_level < 40
    assert blue_level < 40


def test_palette_png_without_transparency_becomes_rgb_jpeg() -> None:
    palette = Image.new("RGB", (40, 30), (20, 120, 220)).convert("P", palette=Image.Palette.ADAPTIVE)

    result, output = render(encode(palette, "PNG"))

    assert (result.content_type, output.mode) == ("image/jpeg", "RGB")
    assert mean_difference(output, Image.new("RGB", (40, 30), (20, 120, 220))) < 3


def test_palette_png_with_transparent_index_becomes_rgba_png() -> None:
    palette = Image.new("P", (40, 30), 1)
    palette.putpalette([0, 0, 0, 20, 120, 220])
    palette.paste(0, (0, 0, 20, 30))

    result, output = render(encode(palette, "PNG", transparency=0))

    assert (result.content_type, output.mode) == ("image/png", "RGBA")
    assert bands(output, (5, 5))[3] == 0
    assert bands(output, (35, 5)) == (20, 120, 220, 255)


def test_source_metadata_is_not_copied() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 3
    exif[ExifTags.Base.Make] = "Camera"
    data = encode(noisy_photo((64, 64)), "JPEG", exif=exif, icc_profile=b"profile", comment=b"hello")

    result, output = render(data)

    assert not set(output.info) & {"exif", "icc_profile", "comment"}
    assert revealing_metadata(result.data) == {}


def unreadable_exif_images() -> list[Any]:
    picture = noisy_photo((64, 48))
    broken_profile = PngImagePlugin.PngInfo()
    # Pillow reads this ImageMagick chunk with bytes.fromhex(), which raises on anything else.
    broken_profile.add_text("Raw profile type exif", "\nexif\n       4\nnot hex at all\n")
    return [
        pytest.param(encode(picture, "JPEG", exif=b"Exif\x00\x00this is no TIFF header"), id="jpeg-app1"),
        pytest.param(encode(picture, "PNG", pnginfo=broken_profile), id="png-raw-profile"),
    ]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize("data", unreadable_exif_images())
def test_unreadable_exif_renders_as_stored(data: bytes) -> None:
    output = rendered_image(data)

    assert output.size == (64, 48)
    with Image.open(io.BytesIO(data)) as stored:
        assert mean_difference(output, stored) < SAME_PICTURE
