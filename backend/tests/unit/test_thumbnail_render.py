"""Thumbnail rendering against the real-file corpus and hand-made edge cases."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import ExifTags, Image, ImageChops, ImageStat, PngImagePlugin

from app.services.thumbnail_render import (
    RenderedThumbnail,
    ThumbnailError,
    render_decoded,
    render_thumbnail,
    thumbnail_key,
)
from app.utils.image_validation import ImageInfo, inspect_image, sniff_content_type
from tests.conftest import corpus_bytes, load_corpus

CORPUS = load_corpus()
ACCEPTED = [case for case in CORPUS if case["expected"]["status"] == 201]
# Files whose first frame Pillow cannot decode, or that are not JPEG/PNG at all. Some accepted-looking
# rejects (a broken second MPO/APNG frame, a padded 56 MP JPEG) do render: only validation stops those.
UNDECODABLE = [case for case in CORPUS if not case["first_frame_decodes"] or case["signature"] not in ("jpeg", "png")]
# The README's measured separation: about 5 with orientation applied, 59-82 without.
SAME_PICTURE = 15.0
PILLOW_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG"}


def render(data: bytes, *, max_side: int = 300) -> tuple[RenderedThumbnail, Image.Image]:
    result = render_thumbnail(io.BytesIO(data), max_side=max_side)
    with Image.open(io.BytesIO(result.data)) as output:
        output.load()
        return result, output


def rendered_image(data: bytes) -> Image.Image:
    return render(data)[1]


def encode(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def bands(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """The band values of one pixel of a multi-band image."""
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    """Mean absolute difference per channel (0-255) of two same-size images, compared in RGB."""
    assert first.size == second.size
    difference = ImageChops.difference(first.convert("RGB"), second.convert("RGB"))
    means: list[float] = ImageStat.Stat(difference).mean
    return sum(means) / len(means)


def noisy_photo(size: tuple[int, int]) -> Image.Image:
    """An RGB picture with gradients and noise, so it compresses like a photo rather than a flat fill."""
    noise = Image.effect_noise(size, 40)
    gradient = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", (noise, gradient, gradient.transpose(Image.Transpose.ROTATE_180)))


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize("case", ACCEPTED, ids=[case["file"] for case in ACCEPTED])
def test_corpus_thumbnail_matches_manifest(case: dict[str, Any]) -> None:
    expected = case["expected"]["thumbnail"]
    result, output = render(corpus_bytes(case["file"]))

    assert abs(output.width - expected["width"]) <= 1
    assert abs(output.height - expected["height"]) <= 1
    assert max(output.size) == min(300, max(expected["oriented_source_size"]))
    layout = "square" if output.width == output.height else "landscape" if output.width > output.height else "portrait"
    assert layout == expected["layout"]
    assert (result.width, result.height) == output.size
    assert has_alpha(output) == expected["has_alpha"]
    assert output.mode in (("RGBA", "LA") if expected["has_alpha"] else ("RGB", "L"))
    assert sniff_content_type(result.data) == result.content_type
    assert output.format == PILLOW_FORMATS[result.content_type]
    assert "exif" not in output.info
    assert ExifTags.Base.Orientation not in output.getexif()
    assert "icc_profile" not in output.info


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_restores_upright_picture(orientation: int) -> None:
    upright = rendered_image(corpus_bytes("hopper.jpg"))
    oriented_bytes = corpus_bytes(f"hopper_orientation_{orientation}.jpg")

    assert mean_difference(rendered_image(oriented_bytes), upright) < SAME_PICTURE
    # Guards the threshold: the stored pixels, unrotated, really are a different picture.
    with Image.open(io.BytesIO(oriented_bytes)) as stored:
        assert mean_difference(stored, upright) > SAME_PICTURE


def test_orientation_6_photo_becomes_portrait() -> None:
    result, output = render(corpus_bytes("flower_orientation_6.jpg"))

    assert (result.width, result.height) == output.size == (225, 300)
    landscape = rendered_image(corpus_bytes("flower.jpg"))
    assert mean_difference(output, landscape.transpose(Image.Transpose.ROTATE_270)) < SAME_PICTURE


def test_orientation_8_turns_two_by_one_into_one_by_two() -> None:
    assert rendered_image(corpus_bytes("orientation_rectangle.jpg")).size == (1, 2)


@pytest.mark.parametrize("name", ["exif_imagemagick_orientation.png", "xmp_tags_orientation_exiftool.png"])
def test_png_orientation_from_text_or_xmp_is_applied(name: str) -> None:
    data = corpus_bytes(name)
    output = rendered_image(data)
    with Image.open(io.BytesIO(data)) as stored:
        as_stored = stored.convert("RGBA").resize(output.size, Image.Resampling.LANCZOS)
    turned = as_stored.transpose(Image.Transpose.ROTATE_180)

    assert mean_difference(output, turned) < 5 < mean_difference(output, as_stored)


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


def test_only_the_first_animation_frame_is_used() -> None:
    red = Image.new("RGB", (40, 40), (255, 0, 0))
    blue = Image.new("RGB", (40, 40), (0, 0, 255))
    data = encode(red, "PNG", save_all=True, append_images=[blue])

    output = rendered_image(data)

    assert mean_difference(output, red) < 3


def test_source_metadata_is_not_copied() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 3
    exif[ExifTags.Base.Make] = "Camera"
    data = encode(noisy_photo((64, 64)), "JPEG", exif=exif, icc_profile=b"profile", comment=b"hello")

    output = rendered_image(data)

    assert not set(output.info) & {"exif", "icc_profile", "comment"}


@pytest.mark.filterwarnings("ignore:Invalid APNG:UserWarning")
@pytest.mark.parametrize("case", UNDECODABLE, ids=[case["file"] for case in UNDECODABLE])
def test_undecodable_corpus_file_raises_thumbnail_error(case: dict[str, Any]) -> None:
    with pytest.raises(ThumbnailError):
        render_thumbnail(io.BytesIO(corpus_bytes(case["file"])))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"certainly not an image", id="text"),
        pytest.param(corpus_bytes("flower.jpg")[:6000], id="truncated-jpeg"),
        pytest.param(corpus_bytes("hopper.png")[:3000], id="truncated-png"),
    ],
)
def test_invalid_input_raises_thumbnail_error(data: bytes) -> None:
    with pytest.raises(ThumbnailError, match="cannot decode"):
        render_thumbnail(io.BytesIO(data))


def test_thumbnail_key_follows_the_output_format() -> None:
    assert thumbnail_key("abc123", "image/jpeg") == "thumbnails/abc123.jpg"
    assert thumbnail_key("abc123", "image/png") == "thumbnails/abc123.png"
    with pytest.raises(ValueError, match="image/webp"):
        thumbnail_key("abc123", "image/webp")


# --- one decode: the frame upload validation keeps -----------------------------------------------


def validate(data: bytes, *, thumbnail_side: int | None = None) -> ImageInfo:
    return inspect_image(
        io.BytesIO(data),
        allowed_content_types=PILLOW_FORMATS,
        max_pixels=100_000_000,
        declared_content_type=None,
        thumbnail_side=thumbnail_side,
    )


@pytest.mark.parametrize("case", ACCEPTED, ids=[case["file"] for case in ACCEPTED])
def test_thumbnail_from_validations_frame_is_the_same_file(case: dict[str, Any]) -> None:
    """A single-frame JPEG is decoded once, by validation; the job's thumbnail must not change for it."""
    data = corpus_bytes(case["file"])
    info = validate(data, thumbnail_side=300)
    from_stored_bytes = render_thumbnail(io.BytesIO(data), max_side=300)
    if info.decoded is None:
        # PNG and multi-frame files (MPO) keep the stored-original path.
        assert case["format"] != "JPEG" or case["frames"] > 1
        return
    assert render_decoded(info.decoded) == from_stored_bytes


def test_validation_without_thumbnail_side_keeps_no_frame() -> None:
    data = encode(Image.new("RGB", (1200, 900), "teal"), "JPEG")
    assert validate(data).decoded is None
    kept = validate(data, thumbnail_side=300)
    assert kept.decoded is not None
    # Decoded at the smallest scale that still covers 300x225 (1/2 of 1200x900 would be 600x450, 1/4 is 300x225).
    assert kept.decoded.image.size == (300, 225)
