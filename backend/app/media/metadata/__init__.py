"""Lossless metadata removal: what a file says about where, when and by whom it was made goes.

Each format's stripper walks the container and copies what decoding and display need, byte for
byte, and never re-encodes a pixel: the result decodes to the same pixels (every frame), is shown
the same way (orientation, colour profile) and stripping it again changes nothing.

    exif      the EXIF orientation, the one EXIF tag that is kept (JPEG, PNG, WebP)
    jpeg      JPEG and MPO: APPn and COM segments; everything after the first EOI
    png       PNG and APNG: text, time and unknown chunks
    webp      WebP: EXIF, XMP and unknown chunks
    gif       GIF: comment, plain text and application extensions but looping and ICC
    isobmff   AVIF, HEIC and HEIF: Exif, XMP and URI items; user data; unknown top-level boxes
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from app.media import formats
from app.media.metadata.gif import strip_gif
from app.media.metadata.isobmff import strip_isobmff
from app.media.metadata.jpeg import strip_jpeg
from app.media.metadata.png import strip_png
from app.media.metadata.webp import strip_webp

_STRIPPERS: Final[dict[str, Callable[[bytes], bytes]]] = {
    formats.JPEG: strip_jpeg,
    formats.PNG: strip_png,
    formats.GIF: strip_gif,
    formats.WEBP: strip_webp,
    formats.AVIF: strip_isobmff,
    formats.HEIF: strip_isobmff,
}


def strip_metadata(data: bytes, content_type: str) -> bytes:
    """The file without its metadata; raises MalformedContainer when its structure cannot be walked."""
    stripper = _STRIPPERS.get(formats.family(content_type))
    if stripper is None:
        raise ValueError(f"no metadata stripper for {content_type!r}")
    return stripper(data)
