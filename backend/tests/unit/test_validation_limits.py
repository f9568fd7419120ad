"""Pixel, frame and animation limits: read from the headers before decoding, and checked again as the decoder goes."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import zlib
from typing import Any

import pytest
from PIL import GifImagePlugin, Image, ImageFile

from app.errors import AnimationTooLarge, ImageDimensionsExceeded, InvalidImage
from app.media import validation
from app.media.census import Census
from app.media.validation import Limits, PreparedUpload, decode_upload, prepare_upload
from tests.conftest import corpus_bytes
from tests.unit.upload_pipeline import LIMITS, decode, prepare, validate

ANIMATION_FORMATS = ("GIF", "PNG", "WEBP", "AVIF")
# Real animations, each with more than three frames.
ANIMATIONS = (
    "webp_animated_5_frames_alpha.webp",
    "gif_animated_10_frames_transparent.gif",
    "iss634.apng",
    "avif_animated_4_frames.avif",
)


def limits(**overrides: int) -> Limits:
    values = {"max_pixels": 10**9, "max_frames": 10**6, "max_animation_pixels": 10**12} | overrides
    return Limits(**values)


def make_image(image_format: str, size: tuple[int, int], **save_options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "orange").save(buffer, image_format, **save_options)
    return buffer.getvalue()


def make_animation(image_format: str, frames: int, size: tuple[int, int] = (40, 30)) -> bytes:
    """Every frame a different colour from the one before, so no encoder merges two of them."""
    images = [Image.new("RGB", size, (index % 2 * 255, index * 7 % 256, 90)) for index in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, image_format, save_all=True, append_images=images[1:])
    return buffer.getvalue()


def make_mpo(first: tuple[int, int], second: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", first, "red").save(buffer, "MPO", save_all=True, append_images=[Image.new("RGB", second, "blue")])
    return buffer.getvalue()


def unchecked(data: bytes, content_type: str) -> PreparedUpload:
    """The bytes as if their headers had passed every check: what a file that fooled our readers gets to."""
    return PreparedUpload(content_type, data, hashlib.sha256(data).hexdigest(), width=1, height=1, stripped=False)


@pytest.fixture
def loaded_frames(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The index of every frame Pillow decodes from now on (GIF, PNG, WebP and AVIF all load through ImageFile)."""
    frames: set[int] = set()
    load = ImageFile.ImageFile.load

    def recording_load(image: ImageFile.ImageFile) -> Any:
        frames.add(image.tell())
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    return frames


# --- from the headers, before any decoding ----------------------------------------------------------


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "GIF", "WEBP", "AVIF"])
def test_the_pixel_limit_is_inclusive(image_format: str) -> None:
    data = make_image(image_format, (100, 50))

    assert validate(data, limits=limits(max_pixels=5_000)).width == 100
    with pytest.raises(ImageDimensionsExceeded) as raised:
        prepare(data, limits=limits(max_pixels=4_999))
    assert raised.value.details == {"width": 100, "height": 50, "max_pixels": 4_999}


def with_png_size(png: bytes, width: int, height: int) -> bytes:
    """Rewrite the IHDR size of a PNG, with a valid CRC so only the size is a lie."""
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:8] + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOF0/SOF2 size of a JPEG written by Pillow (SOF comes after its APPn and DQT)."""
    sof = max(jpeg.find(b"\xff\xc0"), jpeg.find(b"\xff\xc2"))
    assert sof > 0
    return jpeg[: sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9 :]


@pytest.mark.parametrize(
    ("data", "size"),
    [
        # A JPEG size field has 16 bits, so 70000 does not fit in one; the PNG field has 32.
        (with_jpeg_size(make_image("JPEG", (8, 8)), 65_535, 1), (65_535, 1)),
        (with_jpeg_size(make_image("JPEG", (8, 8), progressive=True), 1_000, 70), (1_000, 70)),
        (with_png_size(make_image("PNG", (8, 8)), 70_000, 1), (70_000, 1)),
    ],
    ids=["jpeg-65535x1", "progressive-jpeg-1000x70", "png-70000x1"],
)
def test_a_patched_header_size_is_what_the_limit_sees(data: bytes, size: tuple[int, int]) -> None:
    width, height = size
    with pytest.raises(ImageDimensionsExceeded) as raised:
        validate(data, limits=limits(max_pixels=width * height - 1))
    assert raised.value.details == {"width": width, "height": height, "max_pixels": width * height - 1}

    # Exactly at the limit the header check passes; whether 8x8 worth of data then decodes into the
    # claimed size is the decoder's verdict, but it is never a dimensions error.
    try:
        prepared = validate(data, limits=limits(max_pixels=width * height))
    except InvalidImage:
        return
    assert (prepared.width, prepared.height) == size


@pytest.mark.parametrize("image_format", ANIMATION_FORMATS)
def test_more_frames_than_allowed_are_refused_from_the_headers(
    monkeypatch: pytest.MonkeyPatch, image_format: str
) -> None:
    data = make_animation(image_format, 5)
    assert validate(data, limits=limits(max_frames=5)).width == 40
    opened: list[object] = []
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: opened.append(args))

    with pytest.raises(AnimationTooLarge) as raised:
        prepare(data, limits=limits(max_frames=3))

    assert raised.value.details["limit"] == "frames"
    assert raised.value.details["frames"] > raised.value.details["max_frames"] == 3
    assert opened == []


@pytest.mark.parametrize("image_format", ANIMATION_FORMATS)
def test_the_pixels_of_all_frames_together_are_limited_inclusively(image_format: str) -> None:
    data = make_animation(image_format, 5)  # 5 frames of 40x30: 6,000 pixels

    assert validate(data, limits=limits(max_animation_pixels=6_000, max_pixels=1_200)).height == 30
    with pytest.raises(AnimationTooLarge) as raised:
        prepare(data, limits=limits(max_animation_pixels=5_999))
    assert raised.value.details == {"limit": "pixels", "pixels": 6_000, "max_animation_pixels": 5_999}


@pytest.mark.parametrize("image_format", ["GIF", "PNG"])
def test_the_default_frame_limit_is_inclusive(image_format: str) -> None:
    assert validate(make_animation(image_format, LIMITS.max_frames, (1, 1))).width == 1
    with pytest.raises(AnimationTooLarge, match=f"more than {LIMITS.max_frames} frames"):
        validate(make_animation(image_format, LIMITS.max_frames + 1, (1, 1)))


def test_when_the_headers_give_no_size_pillows_header_view_is_checked_before_decoding(
    monkeypatch: pytest.MonkeyPatch, loaded_frames: set[int]
) -> None:
    monkeypatch.setattr(validation, "take_census", lambda data, content_type, max_frames: None)

    with pytest.raises(ImageDimensionsExceeded):
        prepare(make_image("PNG", (100, 50)), limits=limits(max_pixels=4_999))
    with pytest.raises(AnimationTooLarge, match="frames"):
        prepare(make_animation("PNG", 5), limits=limits(max_frames=3))
    assert loaded_frames == set()
    assert validate(make_image("PNG", (100, 50)), limits=limits(max_pixels=5_000)).width == 100


# --- as the decoder sees them ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ANIMATIONS)
def test_the_decoder_refuses_frames_past_the_limit_and_decodes_none_of_them(name: str, loaded_frames: set[int]) -> None:
    # Prepared within the limits, decoded with a tighter one: the decoder's own count must stop it.
    prepared = prepare(corpus_bytes(name))
    loaded_frames.clear()

    with pytest.raises(AnimationTooLarge) as raised:
        decode(prepared, limits=limits(max_frames=3))

    assert raised.value.details["limit"] == "frames"
    assert raised.value.details["frames"] > 3
    assert loaded_frames == {0, 1, 2}


@pytest.mark.parametrize("name", ANIMATIONS)
def test_the_decoder_stops_before_the_frame_that_would_pass_the_pixel_limit(name: str, loaded_frames: set[int]) -> None:
    prepared = prepare(corpus_bytes(name))
    two_frames = prepared.width * prepared.height * 2
    loaded_frames.clear()

    with pytest.raises(AnimationTooLarge) as raised:
        decode(prepared, limits=limits(max_animation_pixels=two_frames))

    assert raised.value.details["limit"] == "pixels"
    assert raised.value.details["pixels"] > two_frames
    assert loaded_frames == {0, 1}


def test_an_unstripped_mpo_cannot_hide_a_large_second_picture() -> None:
    data = make_mpo((10, 10), (200, 200))

    # Its headers speak only of the primary picture; stripping drops the other one.
    stored = validate(data, limits=limits(max_pixels=1_000))
    assert (stored.width, stored.height, len(stored.data) < len(data)) == (10, 10, True)
    with pytest.raises(ImageDimensionsExceeded) as raised:
        validate(data, limits=limits(max_pixels=1_000), strip=False)
    assert raised.value.details == {"width": 200, "height": 200, "max_pixels": 1_000}


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_a_size_that_fooled_the_headers_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch, loaded_frames: set[int], image_format: str
) -> None:
    monkeypatch.setattr(validation, "take_census", lambda data, content_type, max_frames: Census(10, 10, 1, 100))
    prepared = prepare(make_image(image_format, (100, 50)), limits=limits(max_pixels=1_000))

    with pytest.raises(ImageDimensionsExceeded):
        decode(prepared, limits=limits(max_pixels=1_000))
    assert loaded_frames == set()


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("gif_100000_frames_bomb.gif", "image/gif"), ("webp_1001_frames_bomb.webp", "image/webp")],
)
def test_a_frame_bomb_that_fooled_the_headers_stops_at_the_limit_quickly(
    loaded_frames: set[int], name: str, content_type: str
) -> None:
    started = time.perf_counter()

    with pytest.raises(AnimationTooLarge) as raised:
        decode(unchecked(corpus_bytes(name), content_type))

    assert raised.value.details["limit"] == "frames"
    assert max(loaded_frames) == LIMITS.max_frames - 1
    # About 0.05 s here; decoding all 100,000 frames of the GIF takes about 1.4 s.
    assert time.perf_counter() - started < 1


def test_a_gif_frame_bomb_behind_many_empty_blocks_is_refused_without_walking_every_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our header count gives up on 18,008 empty blocks; Pillow must not then walk every frame to count them."""
    screen = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00"
    data = screen + b"!\xfe\x00" * 18_008 + frame * 20_000 + b";"
    walked: list[Image.Image] = []
    walk_every_frame = GifImagePlugin.GifImageFile.n_frames.fget

    def counting_frames(image: GifImagePlugin.GifImageFile) -> int:
        walked.append(image)
        return walk_every_frame(image)

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "n_frames", property(counting_frames))
    limits = Limits(max_pixels=50_000_000, max_frames=1000, max_animation_pixels=500_000_000)

    prepared = prepare_upload(
        io.BytesIO(data), allowed_content_types=["image/gif"], declared_content_type=None, limits=limits, strip=True
    )
    with pytest.raises(AnimationTooLarge) as raised:
        decode_upload(prepared, limits=limits, thumbnail_side=300)

    assert raised.value.details["limit"] == "frames"
    assert walked == []
