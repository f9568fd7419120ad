"""The JPEGs the benchmark sends: photo-like (smooth colour fields plus grain), fixed seeds, sized to a target.

Photo-like rather than pure noise, so a file of a given size has the pixel count a camera's would and
validation and thumbnails cost what they cost on real uploads. The 4000x3000 source is the very file
`thumbnail_floor.py` measures, so scenario 4 and its floor decode the same bytes.
"""

from __future__ import annotations

import io
import random

from PIL import Image

import thumbnail_floor

ASPECT = 4 / 3
QUALITY = 90
GRAIN = 0.08


def photo_like_jpeg(width: int, height: int, seed: int) -> bytes:
    """A JPEG of `width`x`height` that codes like a photo (the generator of thumbnail_floor.py, any size)."""
    rng = random.Random(seed)
    blobs = Image.frombytes("RGB", (40, 30), rng.randbytes(40 * 30 * 3)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    grain = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    buffer = io.BytesIO()
    Image.blend(blobs, grain, GRAIN).save(buffer, "JPEG", quality=QUALITY)
    return buffer.getvalue()


def jpeg_near(target_bytes: int, seed: int, *, at_most: int | None = None) -> bytes:
    """A 4:3 photo-like JPEG within ~3% of `target_bytes` (and never above `at_most`)."""
    # Bytes grow about linearly with the pixel count at a fixed quality and grain: a few rescalings
    # of the area converge quickly.
    width = 800
    data = b""
    for _ in range(6):
        height = max(16, round(width / ASPECT))
        data = photo_like_jpeg(width, height, seed)
        ratio = target_bytes / len(data)
        too_big = at_most is not None and len(data) > at_most
        if abs(ratio - 1) < 0.03 and not too_big:
            break
        width = max(16, round(width * ratio**0.5 * (0.99 if at_most else 1)))
    if at_most is not None and len(data) > at_most:
        raise RuntimeError(f"could not make a JPEG of at most {at_most} bytes (got {len(data)})")
    return data


def thumbnail_source_jpeg() -> bytes:
    """The 4000x3000 q90 JPEG of thumbnail_floor.py (about 2.8 MB)."""
    return thumbnail_floor.make_photo_like_jpeg()
