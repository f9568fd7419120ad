"""Frames after the first cannot smuggle a decompression bomb past the pixel limit."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from app.errors import ImageDimensionsExceeded
from app.utils.image_validation import MAX_FRAMES, inspect_image

ALLOWED = ("image/jpeg", "image/png")


def _mpo(first: tuple[int, int], second: tuple[int, int]) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.new("RGB", first, "red").save(buffer, "MPO", save_all=True, append_images=[Image.new("RGB", second, "blue")])
    buffer.seek(0)
    return buffer


def _apng(frames: int, size: tuple[int, int]) -> io.BytesIO:
    images = [Image.new("RGB", size, (index % 256, 0, 0)) for index in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "PNG", save_all=True, append_images=images[1:])
    buffer.seek(0)
    return buffer


def test_a_small_first_frame_does_not_hide_an_oversized_later_frame() -> None:
    source = _mpo((10, 10), (200, 200))
    with pytest.raises(ImageDimensionsExceeded):
        inspect_image(source, allowed_content_types=ALLOWED, max_pixels=1_000, declared_content_type=None)


def test_an_mpo_whose_frames_fit_is_accepted() -> None:
    info = inspect_image(
        _mpo((10, 10), (20, 20)), allowed_content_types=ALLOWED, max_pixels=1_000, declared_content_type=None
    )
    assert (info.width, info.height, info.frames) == (10, 10, 2)


def test_all_frames_together_must_fit_twice_the_pixel_limit() -> None:
    # 4 frames of 6,400 pixels: each passes a 10,000 limit, together they pass 20,000.
    with pytest.raises(ImageDimensionsExceeded):
        inspect_image(_apng(4, (80, 80)), allowed_content_types=ALLOWED, max_pixels=10_000, declared_content_type=None)
    info = inspect_image(
        _apng(3, (80, 80)), allowed_content_types=ALLOWED, max_pixels=10_000, declared_content_type=None
    )
    assert info.frames == 3


def test_too_many_frames_are_refused_before_decoding_them() -> None:
    with pytest.raises(ImageDimensionsExceeded, match="frames"):
        inspect_image(
            _apng(MAX_FRAMES + 1, (1, 1)),
            allowed_content_types=ALLOWED,
            max_pixels=50_000_000,
            declared_content_type=None,
        )


@pytest.mark.parametrize("declared", ["binary/octet-stream", "application/x-anything", "multipart/mixed"])
def test_declared_types_that_are_not_image_or_text_make_no_claim(declared: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    buffer.seek(0)
    info = inspect_image(buffer, allowed_content_types=ALLOWED, max_pixels=1_000, declared_content_type=declared)
    assert info.content_type == "image/png"
