"""Render the thumbnail of an accepted upload: first frame, EXIF orientation applied, fitted into a square box.

Every accepted format gets one: an animation gives a still of its first frame, transparency is kept
(as PNG), and the result carries no metadata at all. Pure and synchronous (the caller runs it in a
worker thread). Only files that passed upload validation get here, so a decode failure means the file
itself is unusable: `ThumbnailError` says so, and the caller does not retry it. Anything else that
escapes is treated as transient by the caller.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Final

from PIL import Image, JpegImagePlugin

from app.media.codecs import register_codecs
from app.media.formats import JPEG, PILLOW_FORMATS, PNG
from app.media.placeholders import thumbhash_of
from app.media.thumbnail_plan import ORIENTATION_TRANSPOSE, DecodedFrame, ThumbnailPlan, plan_thumbnail

# Everything Pillow raises for a file it cannot decode (see the corpus README: not only OSError).
# MemoryError is deliberately absent: it says nothing about the file and may pass on a retry.
DECODE_ERRORS: Final = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    LookupError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
    # pillow-heif reports libheif's decoding errors as RuntimeError.
    RuntimeError,
)
# Every plugin an accepted original may need, and no other.
SOURCE_FORMATS: Final = tuple(sorted({name for names in PILLOW_FORMATS.values() for name in names}))
_SIXTEEN_BIT_MODES: Final = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
# Maps a 16-bit sample to 8 bits the way the PNG spec scales them (65535 -> 255, rounded), as a
# lookup table because Image.point only takes linear functions for mode I.
_SIXTEEN_TO_EIGHT_BIT: Final = [(value + 128) // 257 for value in range(65536)]
# Bicubic, after resize() first shrinks by the largest integer factor that stays at or above the target
# (a cheap box reduction, as a JPEG's draft decode does in libjpeg). At 300 px bicubic is
# indistinguishable from Lanczos and resamples in about 70% of its time (1.9 ms against 2.65 ms from a
# 485x364 draft). A full-size 1600x1200 WebP frame then fits in 2.2 ms instead of 5.0 with Pillow's
# default gap of 2.0, within one grey level of a full Lanczos resize on average.
_RESAMPLE: Final = Image.Resampling.BICUBIC
_REDUCING_GAP: Final = 1.0
_JPEG_QUALITY: Final = 85


class ThumbnailError(Exception):
    """The image cannot be decoded into a thumbnail; retrying will not help."""


@dataclass(frozen=True)
class RenderedThumbnail:
    """An encoded thumbnail and its displayed size."""

    # Kept out of repr so that logging a result does not dump the whole image.
    data: bytes = field(repr=False)
    content_type: str
    width: int
    height: int
    # SHA-256 hex of `data`, taken in the render's thread: hashing on the event loop would release the
    # GIL and make the loop wait to take it back from busy worker threads.
    checksum: str
    # The picture's ThumbHash (`placeholders`), from the thumbnail: a fraction of a millisecond here.
    placeholder: str | None = None


# What a thumbnail can be: PNG when the source has transparency, JPEG otherwise.
THUMBNAIL_CONTENT_TYPES: Final = (JPEG, PNG)


def thumbnail_key(image_id: str, content_type: str) -> str:
    """Return the storage key of an image's thumbnail, deterministic so retries overwrite it."""
    if content_type == JPEG:
        return f"thumbnails/{image_id}.jpg"
    if content_type == PNG:
        return f"thumbnails/{image_id}.png"
    raise ValueError(f"thumbnails are JPEG or PNG, not {content_type!r}")


def render_thumbnail(source: BinaryIO, *, max_side: int = 300) -> RenderedThumbnail:
    """Render the oriented first frame fitted into max_side x max_side: PNG if it has transparency, else JPEG."""
    if max_side < 1:
        raise ValueError("max_side must be positive")
    # Read everything up front: a failing read of the source is an I/O problem worth retrying, while
    # every error Pillow raises on in-memory bytes is a property of the file.
    data = source.read()
    register_codecs()
    try:
        with Image.open(io.BytesIO(data), formats=SOURCE_FORMATS) as image:
            if not isinstance(image, JpegImagePlugin.JpegImageFile):
                # PNG may keep its orientation (eXIf) after the pixel data, seen only once loaded.
                image.load()
            plan = plan_thumbnail(image, max_side)
            image.load()
            fitted = _fit(image, plan)
    except DECODE_ERRORS as exc:
        raise ThumbnailError(f"cannot decode the image ({type(exc).__name__}: {exc})"[:200]) from exc
    return _orient_and_encode(fitted, plan.orientation)


def render_decoded(frame: DecodedFrame) -> RenderedThumbnail:
    """The same thumbnail as `render_thumbnail`, from the frame upload validation already decoded."""
    try:
        fitted = _fit(frame.image, frame.plan)
    except DECODE_ERRORS as exc:
        raise ThumbnailError(f"cannot convert the image ({type(exc).__name__}: {exc})"[:200]) from exc
    return _orient_and_encode(fitted, frame.plan.orientation)


def fit_loaded_frame(image: Image.Image, max_side: int) -> DecodedFrame:
    """The loaded current frame of `image`, fitted already, so a thumbnail job only orients and encodes it.

    Upload validation decodes every frame anyway; keeping frame 0 at thumbnail size (a few hundred KB
    at most) spares the job a second decode of the whole original, which for HEIC or a large WebP
    costs as much as the validation itself.
    """
    plan = plan_thumbnail(image, max_side)
    fitted = _fit(image, plan)
    return DecodedFrame(fitted, ThumbnailPlan(orientation=plan.orientation, target=fitted.size, box=None))


def _fit(image: Image.Image, plan: ThumbnailPlan) -> Image.Image:
    """The loaded frame in a displayable mode, resized to the plan's target (still as stored)."""
    working = displayable(image)
    if working.size != plan.target:
        working = working.resize(plan.target, _RESAMPLE, box=plan.box, reducing_gap=_REDUCING_GAP)
    elif working is image:
        # Detach from the file object, which is closed on return.
        working = image.copy()
    return working


def _orient_and_encode(thumbnail: Image.Image, orientation: int) -> RenderedThumbnail:
    method = ORIENTATION_TRANSPOSE.get(orientation)
    if method is not None:
        # Turning the thumbnail rather than the decoded source moves a few thousand pixels, not millions.
        thumbnail = thumbnail.transpose(method)
    rendered = _encode(thumbnail)
    return replace(rendered, placeholder=thumbhash_of(thumbnail))


def displayable(image: Image.Image) -> Image.Image:
    """Convert to L or RGB (opaque) or LA or RGBA (transparent): modes that resize well and encode as-is."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return _from_sixteen_bit(image)
    if image.has_transparency_data:
        # convert() turns a tRNS colour or a palette's alpha into a real alpha band.
        target_mode = "LA" if mode in ("1", "L", "LA", "La") else "RGBA"
    else:
        # Pillow converts CMYK (also Adobe's inverted YCCK) and palettes to RGB; bilevel becomes 0/255.
        target_mode = "L" if mode in ("1", "L") else "RGB"
    return image if mode == target_mode else image.convert(target_mode)


def _from_sixteen_bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit grayscale to 8 bits, with the tRNS grey level (if any) as an alpha band."""
    # convert("L") would clip every sample above 255 to white instead of scaling it.
    wide = image.convert("I")
    luminance = wide.point(_SIXTEEN_TO_EIGHT_BIT, "L")
    transparent_level = image.info.get("transparency")
    if not isinstance(transparent_level, int) or not 0 <= transparent_level <= 0xFFFF:
        return luminance
    # convert("LA") compares the tRNS level against clipped samples, so build the alpha band here.
    opaque = [255] * 65536
    opaque[transparent_level] = 0
    return Image.merge("LA", (luminance, wide.point(opaque, "L")))


def _encode(thumbnail: Image.Image) -> RenderedThumbnail:
    """Encode as PNG when there is an alpha band, else JPEG, without any of the source's metadata."""
    # Pillow's encoders copy some metadata from info (a PNG's ICC profile, a JPEG comment). Dropping all
    # of it keeps EXIF orientation from being applied twice and a bogus ICC profile out of the output.
    thumbnail.info = {}
    buffer = io.BytesIO()
    if thumbnail.mode in ("LA", "RGBA"):
        # optimize=True tries every filter at maximum compression: many times slower for a few percent.
        thumbnail.save(buffer, "PNG", optimize=False)
        content_type = PNG
    else:
        thumbnail.save(buffer, "JPEG", quality=_JPEG_QUALITY, optimize=False, progressive=False)
        content_type = JPEG
    width, height = thumbnail.size
    data = buffer.getvalue()
    return RenderedThumbnail(
        data=data, content_type=content_type, width=width, height=height, checksum=hashlib.sha256(data).hexdigest()
    )
