"""What tests look at in an image: its pixels frame by frame, and the metadata Pillow finds in it."""

from __future__ import annotations

import io
import itertools
from functools import cache

import pillow_heif
from PIL import ExifTags, Image

# EXIF tags that tell where, when and with what a photo was taken.
LOOPING_EXTENSIONS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")
REVEALING_EXIF_TAGS = (ExifTags.Base.Make, ExifTags.Base.Model, ExifTags.Base.DateTime, ExifTags.Base.Software)


@cache
def _register_heif() -> None:
    pillow_heif.register_heif_opener()


def open_image(data: bytes) -> Image.Image:
    _register_heif()
    return Image.open(io.BytesIO(data))


def frames_pixels(data: bytes, *, frames: int | None = None) -> list[bytes]:
    """Every frame's pixels (or the first `frames`) as RGBA bytes, in the order a decoder produces them."""
    image = open_image(data)
    pixels = []
    for index in itertools.count() if frames is None else range(frames):
        try:
            image.seek(index)
        except EOFError:
            break
        pixels.append(image.convert("RGBA").tobytes())
    return pixels


def revealing_metadata(data: bytes) -> dict[str, object]:
    """What a decoder reveals beyond the picture: GPS, camera, dates, XMP, IPTC, comments, text."""
    image = open_image(data)
    image.load()
    found: dict[str, object] = {}
    exif = image.getexif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    if gps:
        found["gps"] = dict(gps)
    for tag in REVEALING_EXIF_TAGS:
        if tag in exif:
            found[tag.name] = exif[tag]
    if exif.get_ifd(ExifTags.IFD.Exif):
        found["exif_ifd"] = dict(exif.get_ifd(ExifTags.IFD.Exif))
    for key in ("xmp", "XML:com.adobe.xmp", "photoshop", "comment"):
        if image.info.get(key):
            found[key] = image.info[key]
    # A GIF's application extension: the looping ones say how to play, anything else carries data.
    extension = image.info.get("extension")
    if extension and extension[0] not in LOOPING_EXTENSIONS:
        found["extension"] = extension
    texts = getattr(image, "text", None)
    if texts:
        found["text"] = dict(texts)
    return found


def orientation(data: bytes) -> int:
    """The EXIF orientation a viewer applies (1 when there is none)."""
    value = open_image(data).getexif().get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) else 1


def icc_profile(data: bytes) -> bytes | None:
    profile: bytes | None = open_image(data).info.get("icc_profile")
    return profile or None
