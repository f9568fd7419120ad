"""ThumbHash placeholders: a ~25-byte sketch of a picture, shown while the real image loads.

Computed once per image, from its thumbnail, by the thumbnail job (ADR 0015); clients decode it
themselves (the reference decoders are a few lines in every language), and the web UI turns it into
a tiny PNG data URL.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache
from typing import Final

from fast_thumbhash import rgba_to_thumb_hash, thumb_hash_to_rgba
from PIL import Image

from app.media.thumbnail_plan import fitted_size

# ThumbHash encodes at most 100x100 pixels.
_MAX_SIDE: Final = 100


def thumbhash_of(picture: Image.Image) -> str:
    """The ThumbHash of an oriented picture (any mode), base64 as the reference implementation prints it."""
    width, height = fitted_size(*picture.size, max_side=_MAX_SIDE)
    small = picture.convert("RGBA")
    if small.size != (width, height):
        small = small.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    digest = bytes(rgba_to_thumb_hash(width, height, small.tobytes()))
    return base64.b64encode(digest).decode("ascii")


@lru_cache(maxsize=4096)
def placeholder_data_url(thumbhash: str) -> str | None:
    """A small PNG of the placeholder as a data URL (for pages), or None if the hash is not valid."""
    try:
        width, height, rgba = thumb_hash_to_rgba(base64.b64decode(thumbhash, validate=True))
        picture = Image.frombytes("RGBA", (width, height), bytes(rgba))
    except ValueError:  # not base64, or not a ThumbHash (the decoder raises ValueError too)
        return None
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
