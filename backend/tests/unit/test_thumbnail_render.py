"""Thumbnails of the stored corpus: the manifest's size, alpha and orientation, one file both ways, no metadata."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import ExifTags, Image

from app.media.thumbnails import ThumbnailError, render_decoded, render_thumbnail, thumbnail_key
from tests.conftest import corpus_bytes
from tests.fixtures.make_images import scene
from tests.image_checks import open_image, revealing_metadata
from tests.unit.thumbnail_checks import SAME_PICTURE, encode, mean_difference, render, rendered_image
from tests.unit.upload_pipeline import CORPUS, LIMIT_CODES, corpus_ids, decode, prepare, validate

ACCEPTED = [case for case in CORPUS if case["expected"]["status"] == 201]
# Orientation applied, and a picture large enough for similarity to tell (2x1 pixels is not).
ORIENTED = [
    case
    for case in ACCEPTED
    if case["expected"]["thumbnail"]["orientation_applied"] != 1 and min(case["width"], case["height"]) > 8
]
# The generated portrait scenes stored sideways; the HEIC one holds its turn as irot, not EXIF.
SIDEWAYS_SCENES = [
    case for case in ACCEPTED if case["source"].startswith("generated") and "_orientation_6." in case["file"]
]
# Files whose first frame Pillow cannot decode. The bombs are left out: they must never be decoded.
UNDECODABLE = [
    case for case in CORPUS if case["first_frame_decodes"] is False and case["expected"]["code"] not in LIMIT_CODES
]
PILLOW_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG"}
QUARTER_TURNS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Lossy generated scenes come out 14-16 from scene(); mirrored, 29-35; upside down, 62-67.
SAME_SCENE = 25.0


def stored_bytes(name: str) -> bytes:
    """What the service stores for a corpus file: stripped of its metadata."""
    return validate(corpus_bytes(name)).data


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


@pytest.mark.parametrize("case", ACCEPTED, ids=corpus_ids(ACCEPTED))
def test_corpus_thumbnail_matches_manifest(case: dict[str, Any]) -> None:
    expected = case["expected"]["thumbnail"]
    result, output = render(stored_bytes(case["file"]))  # both ways, and they agree

    assert abs(output.width - expected["width"]) <= 1
    assert abs(output.height - expected["height"]) <= 1
    assert max(output.size) == min(300, max(expected["oriented_source_size"]))
    layout = "square" if output.width == output.height else "landscape" if output.width > output.height else "portrait"
    assert layout == expected["layout"]
    assert (result.width, result.height) == output.size
    assert has_alpha(output) == expected["has_alpha"]
    assert output.mode in (("RGBA", "LA") if expected["has_alpha"] else ("RGB", "L"))
    assert output.format == PILLOW_FORMATS[result.content_type]
    assert not set(output.info) & {"exif", "icc_profile", "comment", "xmp", "transparency"}
    assert ExifTags.Base.Orientation not in output.getexif()
    assert revealing_metadata(result.data) == {}


@pytest.mark.parametrize("case", ORIENTED, ids=corpus_ids(ORIENTED))
def test_corpus_thumbnail_is_turned_as_the_manifest_says(case: dict[str, Any]) -> None:
    stored = stored_bytes(case["file"])
    output = rendered_image(stored)
    with open_image(stored) as picture:
        as_stored = picture.convert("RGB")
    upright = as_stored.transpose(QUARTER_TURNS[case["expected"]["thumbnail"]["orientation_applied"]])

    assert mean_difference(output, upright.resize(output.size, Image.Resampling.LANCZOS)) < SAME_PICTURE
    # Guards the threshold: the stored pixels, unturned, really are another picture.
    assert mean_difference(output, as_stored.resize(output.size, Image.Resampling.LANCZOS)) > SAME_PICTURE


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_restores_the_upright_picture(orientation: int) -> None:
    upright = rendered_image(stored_bytes("hopper.jpg"))
    oriented_bytes = stored_bytes(f"hopper_orientation_{orientation}.jpg")

    assert mean_difference(rendered_image(oriented_bytes), upright) < SAME_PICTURE
    with Image.open(io.BytesIO(oriented_bytes)) as stored:
        assert mean_difference(stored, upright) > SAME_PICTURE


def test_an_orientation_6_photo_becomes_portrait() -> None:
    result, output = render(stored_bytes("flower_orientation_6.jpg"))

    assert (result.width, result.height) == output.size == (225, 300)
    landscape = rendered_image(stored_bytes("flower.jpg"))
    assert mean_difference(output, landscape.transpose(Image.Transpose.ROTATE_270)) < SAME_PICTURE


def test_orientation_8_turns_two_by_one_into_one_by_two() -> None:
    assert rendered_image(stored_bytes("orientation_rectangle.jpg")).size == (1, 2)


@pytest.mark.parametrize("case", SIDEWAYS_SCENES, ids=corpus_ids(SIDEWAYS_SCENES))
def test_a_sideways_scene_comes_out_upright_in_every_format(case: dict[str, Any]) -> None:
    # AVIF keeps its turn as irot, which Pillow reports as EXIF orientation; pillow-heif turns a HEIC
    # itself. Either way it must be turned exactly once.
    output = rendered_image(stored_bytes(case["file"]))
    portrait = scene((225, 300))

    assert output.size == portrait.size
    assert mean_difference(output, portrait) < SAME_SCENE
    assert mean_difference(output, portrait.transpose(Image.Transpose.ROTATE_180)) > SAME_SCENE


@pytest.mark.parametrize("name", ["exif_imagemagick_orientation.png", "xmp_tags_orientation_exiftool.png"])
def test_a_png_orientation_from_text_or_xmp_is_dropped_with_them(name: str) -> None:
    # Browsers ignore both; Pillow would read 3 from the upload, but stripping drops those chunks.
    stored = stored_bytes(name)
    output = rendered_image(stored)
    with Image.open(io.BytesIO(stored)) as picture:
        as_stored = picture.convert("RGBA").resize(output.size, Image.Resampling.LANCZOS)
    turned = as_stored.transpose(Image.Transpose.ROTATE_180)

    assert mean_difference(output, as_stored) < 5 < mean_difference(output, turned)


@pytest.mark.parametrize("image_format", ["PNG", "GIF", "WEBP", "AVIF"])
def test_an_animation_gives_its_first_frame(image_format: str) -> None:
    red = Image.new("RGB", (40, 40), (255, 0, 0))
    blue = Image.new("RGB", (40, 40), (0, 0, 255))
    stored = validate(encode(red, image_format, save_all=True, append_images=[blue, red, blue])).data

    output = rendered_image(stored)

    assert mean_difference(output, red) < 5
    assert mean_difference(output, blue) > 100


def test_an_unstripped_mpo_gives_a_similar_thumbnail_both_ways() -> None:
    # The stored bytes' path draft-decodes the MPO's primary JPEG at 1/2 scale, while validation decoded
    # every frame at full size (an MPO is not a plain JPEG to it): the same picture, not the same bytes.
    prepared = prepare(corpus_bytes("sugarshack.mpo"), strip=False)
    from_stored = render_thumbnail(io.BytesIO(prepared.data))
    from_validation = render_decoded(decode(prepared))

    assert (from_stored.width, from_stored.height) == (from_validation.width, from_validation.height) == (300, 225)
    assert mean_difference(open_image(from_stored.data), open_image(from_validation.data)) < 5


def test_validation_keeps_a_jpeg_frame_decoded_at_the_smallest_scale_that_covers_the_thumbnail() -> None:
    data = encode(Image.new("RGB", (1200, 900), "teal"), "JPEG")

    decoded = decode(prepare(data))

    # 1/2 of 1200x900 would be 600x450; 1/4 is 300x225, exactly the thumbnail.
    assert decoded.image.size == (300, 225)


@pytest.mark.parametrize("name", ["itxt_chunks.png", "webp_lossy_photo_640x480.webp", "heic_static.heic"])
def test_validation_keeps_other_formats_frame_at_thumbnail_size(name: str) -> None:
    decoded = decode(prepare(corpus_bytes(name)))

    assert max(decoded.image.size) == 300


@pytest.mark.filterwarnings("ignore:Invalid APNG:UserWarning")
@pytest.mark.parametrize("case", UNDECODABLE, ids=corpus_ids(UNDECODABLE))
def test_an_undecodable_corpus_file_raises_thumbnail_error(case: dict[str, Any]) -> None:
    with pytest.raises(ThumbnailError):
        render_thumbnail(io.BytesIO(corpus_bytes(case["file"])))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"certainly not an image", id="text"),
        pytest.param(corpus_bytes("flower.jpg")[:6000], id="truncated-jpeg"),
        pytest.param(corpus_bytes("hopper.png")[:3000], id="truncated-png"),
        pytest.param(corpus_bytes("avif_static.avif")[:2000], id="truncated-avif"),
        pytest.param(b"RIFF\x00\x00\x00\x00WEBPVP8 ", id="webp-header-only"),
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
