"""Rendering thumbnails both ways the service does, and comparing pictures by similarity, never by bytes."""

from __future__ import annotations

import io
from typing import Any, Final

from PIL import Image, ImageChops, ImageStat

from app.media.thumbnails import RenderedThumbnail, render_decoded, render_thumbnail
from tests.unit.upload_pipeline import THUMBNAIL_SIDE, decode, prepare

# The corpus README's measured separation: about 5 with orientation applied, 59-82 without.
SAME_PICTURE: Final = 15.0


def render(stored: bytes, *, max_side: int = THUMBNAIL_SIDE) -> tuple[RenderedThumbnail, Image.Image]:
    """The thumbnail of stored bytes, and the same thumbnail opened.

    At the service's size it is made both ways the service makes it: from the stored bytes (the job
    for a duplicate or a retry) and from the frame upload validation decoded (a new upload). Both
    must give the same file.
    """
    result = render_thumbnail(io.BytesIO(stored), max_side=max_side)
    if max_side == THUMBNAIL_SIDE:
        from_validation = render_decoded(decode(prepare(stored, strip=False)))
        assert from_validation == result, "the decoded frame gave another thumbnail than the stored bytes"
    output = Image.open(io.BytesIO(result.data))
    output.load()
    return result, output


def rendered_image(stored: bytes) -> Image.Image:
    return render(stored)[1]


def encode(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def mean_difference(first: Image.Image, second: Image.Image, mode: str = "RGB") -> float:
    """Mean absolute difference per channel (0-255) of two same-size images, compared in `mode`."""
    assert first.size == second.size
    difference = ImageChops.difference(first.convert(mode), second.convert(mode))
    means: list[float] = ImageStat.Stat(difference).mean
    return sum(means) / len(means)


def noisy_photo(size: tuple[int, int]) -> Image.Image:
    """An RGB picture with gradients and noise, so it compresses like a photo rather than a flat fill."""
    noise = Image.effect_noise(size, 40)
    gradient = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", (noise, gradient, gradient.transpose(Image.Transpose.ROTATE_180)))
