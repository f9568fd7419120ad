"""Variants of the stored corpus: the format, size, orientation, animation and transparency asked for, no
metadata, and for a file that cannot give one, `VariantError` and nothing else (ADR 0015)."""

from __future__ import annotations

import hashlib
import io
from functools import cache
from typing import Any, Final

import pytest
from PIL import ExifTags, Image

from app.media.variants import Encoders, RenderedVariant, VariantError, VariantRecipe, render_variant
from tests.conftest import corpus_bytes
from tests.image_checks import open_image, revealing_metadata
from tests.unit.thumbnail_checks import SAME_PICTURE, encode, mean_difference
from tests.unit.upload_pipeline import CORPUS, corpus_ids, validate

ENCODERS: Final = Encoders()
BUDGET: Final = 50_000_000  # VARIANT_MAX_ANIMATION_PIXELS' default
MODES: Final = ("jpeg", "png", "webp", "avif", "source", "auto", "auto-webp", "auto-avif", "auto-avif-webp")
PILLOW_NAMES: Final = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/avif": "AVIF"}
PILLOW_NAMES_ALL: Final = {**PILLOW_NAMES, "image/gif": "GIF"}
ACCEPTED: Final = [case for case in CORPUS if case["expected"]["status"] == 201]
# Upload refuses these from their headers; decoded anyway they take minutes (100,000 frames, 56 MP),
# and a variant is only ever made of an accepted original.
SLOW_BOMBS: Final = {"gif_100000_frames_bomb.gif", "webp_1001_frames_bomb.webp", "jpeg_header_8000x7000_over_limit.jpg"}
EVERY_FILE: Final = [case for case in CORPUS if case["file"] not in SLOW_BOMBS]


@cache
def stored_bytes(name: str) -> bytes:
    """What the service stores for a corpus file: stripped of its metadata."""
    return validate(corpus_bytes(name)).data


def render(data: bytes, width: int | None, mode: str, *, budget: int = BUDGET) -> RenderedVariant:
    return render_variant(data, VariantRecipe(width, mode), ENCODERS, max_animation_pixels=budget)


def opened(result: RenderedVariant) -> Image.Image:
    picture = open_image(result.data)
    picture.load()
    return picture


def is_animated(case: dict[str, Any]) -> bool:
    # An MPO's second picture is not a frame: it is stored, and shown, as a JPEG.
    return (case["frames"] or 1) > 1 and case["expected"]["stored_format"] != "jpeg"


def expected_type(case: dict[str, Any], mode: str) -> str:
    """What the module's docstring promises for this original and mode."""
    stored: str = case["expected"]["stored_format"]
    alpha: bool = case["expected"]["thumbnail"]["has_alpha"]
    animated = is_animated(case)
    family = "gif" if animated else "png" if alpha or stored in ("png", "gif") else "jpeg"
    if mode in ("jpeg", "png", "webp", "avif"):
        chosen = mode
    elif mode == "source" and animated and stored in ("png", "avif"):
        chosen = "webp"  # animations are written as WebP or GIF only
    elif mode == "source":
        shown = stored in ("jpeg", "png", "webp", "avif") or (stored == "gif" and animated)
        chosen = stored if shown else family
    else:
        accepted = mode.split("-")[1:]
        if animated:
            chosen = "webp" if "webp" in accepted else "gif"
        elif "avif" in accepted and not (alpha and "webp" in accepted):
            chosen = "avif"
        else:
            chosen = "webp" if "webp" in accepted else family
    return f"image/{chosen}"


def expected_size(case: dict[str, Any], width: int | None) -> tuple[int, int]:
    shown_width, shown_height = case["expected"]["thumbnail"]["oriented_source_size"]
    if width is None or width >= shown_width:
        return shown_width, shown_height
    return width, max(1, round(shown_height * width / shown_width))


def has_alpha(picture: Image.Image) -> bool:
    return picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info


@cache
def see_through(data: bytes) -> bool:
    """Whether the first frame has a pixel that is not opaque (encoders may drop an alpha that is all 255)."""
    with open_image(data) as picture:
        lowest = picture.convert("RGBA").getchannel("A").getextrema()[0]
    assert isinstance(lowest, int)
    return lowest < 255


@pytest.mark.parametrize("case", ACCEPTED, ids=corpus_ids(ACCEPTED))
def test_every_accepted_file_gives_every_mode_at_its_width_without_metadata(case: dict[str, Any]) -> None:
    stored = stored_bytes(case["file"])
    for width, mode in [*((150, mode) for mode in MODES), (None, "source")]:
        label = f"{mode} at {width}"
        result = render(stored, width, mode)
        picture = opened(result)

        assert result.content_type == expected_type(case, mode), label
        assert picture.format == PILLOW_NAMES_ALL[result.content_type], label
        assert (result.width, result.height) == picture.size == expected_size(case, width), label
        assert result.checksum == hashlib.sha256(result.data).hexdigest()
        animated = is_animated(case) and result.content_type in ("image/webp", "image/gif")
        assert getattr(picture, "n_frames", 1) == (case["frames"] if animated else 1), label
        assert revealing_metadata(result.data) == {}, label
        assert ExifTags.Base.Orientation not in picture.getexif(), label
        if result.content_type == "image/jpeg":
            assert picture.mode in ("RGB", "L"), label
        elif result.content_type in ("image/png", "image/webp") and see_through(stored):
            assert has_alpha(picture), label


@pytest.mark.parametrize("case", EVERY_FILE, ids=corpus_ids(EVERY_FILE))
def test_any_file_gives_a_variant_or_variant_error_and_nothing_else(case: dict[str, Any]) -> None:
    """Raw bytes, refused ones too: a render fails only with VariantError, which the service answers as 422."""
    data = corpus_bytes(case["file"])
    for mode in MODES:
        try:
            result = render(data, 150, mode)
        except VariantError:
            continue
        assert isinstance(result, RenderedVariant)
        assert opened(result).size == (result.width, result.height)


UNDECODABLE: Final = ["truncated_jpeg.jpg", "broken_data_stream.png", "gif_corrupt.gif", "webp_corrupt.webp"]


@pytest.mark.parametrize("name", [*UNDECODABLE, "avif_corrupt.avif", "heic_corrupt.heic"])
def test_an_undecodable_file_is_a_variant_error(name: str) -> None:
    with pytest.raises(VariantError, match="cannot render the image"):
        render(corpus_bytes(name), 150, "webp")


def test_empty_and_foreign_bytes_are_a_variant_error() -> None:
    for data in (b"", b"not an image at all", corpus_bytes("pngtest_bad.png.bin")):
        with pytest.raises(VariantError):
            render(data, None, "jpeg")


# --- orientation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(2, 9))
def test_every_exif_orientation_gives_the_upright_picture(orientation: int) -> None:
    upright = opened(render(stored_bytes("hopper.jpg"), None, "png"))
    turned = opened(render(stored_bytes(f"hopper_orientation_{orientation}.jpg"), None, "png"))
    assert mean_difference(turned, upright) < SAME_PICTURE
    with Image.open(io.BytesIO(stored_bytes(f"hopper_orientation_{orientation}.jpg"))) as as_stored:
        assert mean_difference(as_stored, upright) > SAME_PICTURE  # the threshold tells them apart


@pytest.mark.parametrize("image_format", ["jpeg", "webp", "avif"])
def test_an_orientation_6_photo_is_a_portrait_of_the_asked_width(image_format: str) -> None:
    result = render(stored_bytes("flower_orientation_6.jpg"), 150, image_format)
    assert (result.width, result.height) == (150, 200)
    landscape = opened(render(stored_bytes("flower.jpg"), 200, image_format))
    assert mean_difference(opened(result), landscape.transpose(Image.Transpose.ROTATE_270)) < SAME_PICTURE


def test_a_width_is_never_upscaled() -> None:
    for width in (128, 300, 1200):
        assert (render(stored_bytes("hopper.jpg"), width, "webp").width, width) == (128, width)
    assert render(stored_bytes("orientation_rectangle.jpg"), 150, "png").width == 1


# --- colour, transparency ----------------------------------------------------------------------------


def test_grey_stays_grey_and_cmyk_becomes_rgb_without_its_profile() -> None:
    for image_format in ("jpeg", "png"):
        assert opened(render(stored_bytes("hopper_gray.jpg"), None, image_format)).mode == "L"
    cmyk = opened(render(stored_bytes("pil_sample_cmyk.jpg"), None, "jpeg"))
    assert cmyk.mode == "RGB"
    assert "icc_profile" not in cmyk.info
    # Pillow reads the Adobe CMYK as stored; the same picture stored as RGB looks alike, not inverted.
    rgb = opened(render(stored_bytes("pil_sample_rgb.jpg"), None, "jpeg"))
    assert mean_difference(cmyk, rgb) < SAME_PICTURE


@pytest.mark.parametrize("image_format", ["jpeg", "png", "webp", "avif"])
def test_an_rgb_colour_profile_travels_with_the_picture(image_format: str) -> None:
    with Image.open(io.BytesIO(stored_bytes("icc_profile_big.jpg"))) as source:
        profile = source.info["icc_profile"]
    assert opened(render(stored_bytes("icc_profile_big.jpg"), 150, image_format)).info.get("icc_profile") == profile


def test_transparency_is_flattened_on_white_in_jpeg_and_kept_elsewhere() -> None:
    picture = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    picture.paste((0, 0, 255, 255), (20, 0, 40, 20))
    source = encode(picture, "PNG")
    flattened = opened(render(source, None, "jpeg")).convert("RGB")
    assert flattened.getpixel((5, 10)) == (255, 255, 255)
    blue = flattened.getpixel((35, 10))
    assert isinstance(blue, tuple)
    assert blue[2] > 240
    assert max(blue[:2]) < 15
    for mode in ("png", "webp", "avif", "source", "auto", "auto-avif-webp"):
        kept = opened(render(source, None, mode)).convert("RGBA")
        pixel = kept.getpixel((5, 10))
        assert isinstance(pixel, tuple)
        assert pixel[3] < 8, mode


# --- animation ---------------------------------------------------------------------------------------


def animation(durations: list[int], **save: Any) -> bytes:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)][: len(durations)]
    frames = [Image.new("RGB", (64, 48), colour) for colour in colours]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=durations, **save)


def test_an_animation_keeps_its_frames_and_their_timing_in_webp_and_gif() -> None:
    source = animation([100, 250, 400], loop=0)
    for mode in ("webp", "auto", "source", "auto-webp"):
        picture = opened(render(source, None, mode))
        assert getattr(picture, "n_frames", 1) == 3, mode
        timing = []
        for index in range(3):
            picture.seek(index)
            picture.load()  # WebP reads a frame's duration with the frame
            timing.append(picture.info["duration"])
        assert timing == [100, 250, 400], mode


def test_an_animation_gives_its_first_frame_in_still_formats() -> None:
    source = animation([100, 100, 100])
    for mode in ("jpeg", "png", "avif"):
        picture = opened(render(source, 32, mode))
        assert getattr(picture, "n_frames", 1) == 1, mode
        red = picture.convert("RGB").getpixel((16, 12))
        assert isinstance(red, tuple)
        assert red[0] > 200, mode
        assert max(red[1:]) < 50, mode


@pytest.mark.parametrize(
    ("save", "webp_loop", "gif_loop"),
    [
        ({}, 1, None),  # no looping extension: plays once
        ({"loop": 0}, 0, 0),  # forever
        ({"loop": 2}, 3, 2),  # two repetitions after the first play
    ],
)
def test_an_animation_plays_as_often_as_its_source(save: dict[str, int], webp_loop: int, gif_loop: int | None) -> None:
    source = animation([100, 100], **save)
    assert opened(render(source, None, "webp")).info.get("loop") == webp_loop
    assert opened(render(source, None, "auto")).info.get("loop") == gif_loop


def test_the_animation_budget_counts_every_frame_of_the_variant() -> None:
    stored = stored_bytes("webp_animated_5_frames_alpha.webp")  # 5 frames of 192x144
    full = 5 * 192 * 144
    assert opened(render(stored, None, "webp", budget=full)).size == (192, 144)
    for mode in ("webp", "auto"):  # animated WebP, animated GIF
        with pytest.raises(VariantError, match="ask for a smaller width"):
            render(stored, None, mode, budget=full - 1)
    # A smaller width fits where the full size does not; a still is never counted.
    assert render(stored, 150, "webp", budget=5 * 150 * 112).width == 150
    assert render(stored, None, "jpeg", budget=1).width == 192


@pytest.mark.parametrize("image_format", ["PNG", "AVIF"])
def test_an_animated_apng_or_avif_without_a_format_stays_animated_as_webp(image_format: str) -> None:
    frames = [Image.new("RGB", (64, 48), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    source = encode(frames[0], image_format, save_all=True, append_images=frames[1:], duration=[100, 200, 300])
    result = render(source, None, "source")
    picture = opened(result)
    assert (result.content_type, picture.n_frames) == ("image/webp", 3)


def test_a_still_gif_without_a_format_becomes_a_png() -> None:
    result = render(stored_bytes("gif_static_palette.gif"), 150, "source")
    assert (result.content_type, result.width, result.height) == ("image/png", 150, 112)


# --- names -------------------------------------------------------------------------------------------


def test_a_variants_name_follows_its_request_and_every_encoder_setting() -> None:
    recipe = VariantRecipe(300, "webp")
    assert recipe.name(ENCODERS) == recipe.name(Encoders())
    assert VariantRecipe(None, "webp").name(ENCODERS).startswith("full-webp-")
    names = {
        recipe.name(encoders)
        for encoders in (
            ENCODERS,
            Encoders(jpeg_quality=84),
            Encoders(webp_quality=81),
            Encoders(webp_method=5),
            Encoders(avif_quality=61),
            Encoders(avif_speed=7),
            Encoders(png_compress_level=7),
        )
    }
    assert len(names) == 7
    assert all(len(name) <= 64 for name in names)  # the column's size
    assert len(VariantRecipe(1200, "auto-avif-webp").name(ENCODERS)) <= 64
