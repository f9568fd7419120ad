"""Decide whether uploaded bytes are an image worth keeping, cheapest check first.

Two stages, so that a file whose content is already stored never needs decoding (ADR 0014):

1. `prepare_upload`, no decoding at all: magic bytes, the declared Content-Type, sizes and frames read
   from the headers against the limits (pixels, frames, all frames' pixels), then the metadata is
   stripped (ADR 0013) and the bytes to store are hashed.
2. `decode_upload`, for content seen for the first time: every frame of the bytes to store is decoded,
   each checked against the same limits as the decoder sees it before a pixel is allocated, and
   frame 0 is kept at thumbnail size for the thumbnail job.

Everything here is synchronous and CPU-bound; callers run it in a worker thread.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import warnings
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image

from app.errors import AnimationTooLarge, ImageDimensionsExceeded, InvalidFileFormat, InvalidImage, InvalidRequest
from app.media.census import Census, take_census
from app.media.codecs import register_codecs
from app.media.containers import MalformedContainer
from app.media.formats import GIF, JPEG, PILLOW_FORMATS, SNIFF_BYTES, family, sniff_content_type
from app.media.metadata import strip_metadata
from app.media.thumbnail_plan import DecodedFrame, plan_thumbnail
from app.media.thumbnails import fit_loaded_frame
from app.observability.stages import stage

# A declared type that says nothing about the contents: nothing to contradict.
_UNINFORMATIVE_CONTENT_TYPES = frozenset({"", "application/octet-stream"})
# Draft mode decodes a JPEG at 1/8 scale: the whole entropy-coded stream is still read (so truncation and
# corruption are still found), but the inverse DCT and colour conversion cost a fraction.
_JPEG_DRAFT_SCALE = 8


@dataclass(frozen=True)
class Limits:
    """What one upload may cost to decode, all checked before the pixels are allocated."""

    max_pixels: int  # width x height of the picture (the canvas of an animation)
    max_frames: int
    max_animation_pixels: int  # all frames together, each at the size it is decoded at


@dataclass(frozen=True)
class PreparedUpload:
    """An upload that passed every check short of decoding, with the bytes that will be stored."""

    content_type: str
    # Stripped of metadata (or as uploaded, with stripping off): what is hashed, stored and served.
    data: bytes
    checksum: str  # SHA-256 hex of `data`
    width: int  # as stored, before any orientation is applied
    height: int
    stripped: bool


def prepare_upload(
    file: BinaryIO,
    *,
    allowed_content_types: Collection[str],
    declared_content_type: str | None,
    limits: Limits,
    strip: bool,
) -> PreparedUpload:
    """Check an upload without decoding it (signature, declared type, header limits), strip it and hash it."""
    file.seek(0)
    data = file.read()
    if not data:
        raise InvalidRequest("The uploaded file is empty.")
    detected = sniff_content_type(data[:SNIFF_BYTES])
    if detected is None or detected not in allowed_content_types:
        raise InvalidFileFormat(
            "The file is not an allowed image type; only its contents count, not its name.",
            details={"detected": detected, "allowed": sorted(allowed_content_types)},
        )
    _check_declared_content_type(declared_content_type, detected)

    census = take_census(data, detected, max_frames=limits.max_frames)
    if census is None:
        # Our header readers found no size (an unusual layout, or garbage): the decoder's own header
        # parser must find one, and it must pass the same limits before a single pixel is decoded.
        census = _census_from_decoder(data, detected, limits)
    _check_census(census, limits)

    if strip:
        try:
            with stage("strip"):
                data = strip_metadata(data, detected)
        except MalformedContainer as exc:
            raise InvalidImage("The file could not be decoded as an image.") from exc
    return PreparedUpload(
        content_type=detected,
        data=data,
        checksum=hashlib.sha256(data).hexdigest(),
        width=census.width,
        height=census.height,
        stripped=strip,
    )


def decode_upload(prepared: PreparedUpload, *, limits: Limits, thumbnail_side: int) -> DecodedFrame:
    """Decode every frame of the bytes to store, or raise; return frame 0 at the thumbnail's scale.

    The decoder's view of sizes and frames is checked again, frame by frame, before each is loaded:
    the header checks of `prepare_upload` must not be the only line if a file fools our own readers.
    """
    register_codecs()
    with (
        _pillow_errors_as_invalid_image(),
        Image.open(io.BytesIO(prepared.data), formats=PILLOW_FORMATS[prepared.content_type]) as image,
    ):
        _check_pixels(*image.size, limits=limits)
        if image.format == "JPEG":
            # A plain single-frame JPEG (an MPO reports "MPO"): draft mode decodes it once, at the
            # scale the thumbnail needs, and the job starts from that frame.
            plan = plan_thumbnail(image, thumbnail_side)
            image.load()
            return DecodedFrame(image.copy(), plan)
        return _decode_frames(image, limits, thumbnail_side)


def _decode_frames(image: Image.Image, limits: Limits, thumbnail_side: int) -> DecodedFrame:
    """Load every frame in turn (each within the limits first); return frame 0 fitted for the thumbnail."""
    first: DecodedFrame | None = None
    decoded_pixels = 0
    for index in itertools.count():
        # Seeking frame by frame, never asking n_frames: for a GIF that would walk every frame up front.
        if index > 0 and not _seek(image, index):
            break
        if index >= limits.max_frames:
            raise _animation_too_large(frames=index + 1, limits=limits)
        width, height = image.size
        _check_pixels(width, height, limits=limits)
        decoded_pixels += width * height
        if decoded_pixels > limits.max_animation_pixels:
            raise _animation_too_large(pixels=decoded_pixels, limits=limits)
        image.load()
        if first is None:
            first = fit_loaded_frame(image, thumbnail_side)
    if first is None:  # cannot happen: frame 0 exists once the file has opened
        raise InvalidImage("The file has no frame to show.")
    return first


def _seek(image: Image.Image, index: int) -> bool:
    """Move to frame `index`; False when there is none."""
    try:
        image.seek(index)
    except EOFError:
        return False
    return True


def _census_from_decoder(data: bytes, content_type: str, limits: Limits) -> Census:
    register_codecs()
    with _pillow_errors_as_invalid_image(), Image.open(io.BytesIO(data), formats=PILLOW_FORMATS[content_type]) as image:
        width, height = image.size
        _check_pixels(width, height, limits=limits)
        # AVIF, HEIC and PNG count their frames in their headers. A GIF's n_frames would walk every frame
        # (a hostile one holds hundreds of thousands), so its frames are left to `decode_upload`, which
        # counts them one by one within the limits; a JPEG's extra pictures likewise.
        frames = 1 if content_type in (JPEG, GIF) else int(getattr(image, "n_frames", 1))
        return Census(width=width, height=height, frames=frames, animation_pixels=width * height * frames)


def _check_census(census: Census, limits: Limits) -> None:
    # What the decoder allocates counts: for HEIF/AVIF the coded size, before the crop.
    _check_pixels(*(census.coded_size or (census.width, census.height)), limits=limits)
    if census.frames > limits.max_frames:
        raise _animation_too_large(frames=census.frames, limits=limits)
    if census.animation_pixels > limits.max_animation_pixels:
        raise _animation_too_large(pixels=census.animation_pixels, limits=limits)


def _check_pixels(width: int, height: int, *, limits: Limits) -> None:
    if width * height > limits.max_pixels:
        raise ImageDimensionsExceeded(
            f"The image is {width}x{height} pixels; at most {limits.max_pixels} pixels are allowed.",
            details={"width": width, "height": height, "max_pixels": limits.max_pixels},
        )


def _animation_too_large(*, limits: Limits, frames: int | None = None, pixels: int | None = None) -> AnimationTooLarge:
    if frames is not None:
        return AnimationTooLarge(
            f"The animation has more than {limits.max_frames} frames.",
            details={"limit": "frames", "frames": frames, "max_frames": limits.max_frames},
        )
    return AnimationTooLarge(
        f"The animation's frames have more than {limits.max_animation_pixels} pixels in all.",
        details={"limit": "pixels", "pixels": pixels, "max_animation_pixels": limits.max_animation_pixels},
    )


def _check_declared_content_type(declared: str | None, detected: str) -> None:
    if declared is None:
        return
    # Parameters such as "; charset=binary" say nothing about the image format.
    normalised = declared.split(";", 1)[0].strip().lower()
    # Only a declared image or text type makes a claim about the contents (issue 2); anything else
    # (octet-stream, binary/octet-stream from some tools, ...) is accepted and the bytes decide.
    if normalised in _UNINFORMATIVE_CONTENT_TYPES or not normalised.startswith(("image/", "text/")):
        return
    if family(normalised) != family(detected):
        # The declared value is client input that ends up in a response: keep it short.
        shown = normalised[:100]
        raise InvalidFileFormat(
            f"The declared content type {shown!r} does not match the file's contents ({detected}).",
            details={"declared": shown, "detected": detected},
        )


@contextmanager
def _pillow_errors_as_invalid_image() -> Iterator[None]:
    with warnings.catch_warnings():
        # Pillow warns about bombs and odd-but-readable files; the checks here are the verdict, and a
        # process running with warnings-as-errors must not turn a warning into a rejection. Only
        # Pillow's warnings are silenced: catch_warnings swaps process-wide state, so if two threads
        # interleave the filters this leaves behind can only ever mute Pillow.
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
        try:
            yield
        except (ImageDimensionsExceeded, AnimationTooLarge):
            raise
        except Exception as exc:
            # Pillow and pillow-heif raise OSError, SyntaxError, ValueError, RuntimeError, struct.error,
            # DecompressionBombError (a bare Exception) and more; all mean "not a usable image". Their
            # messages can name temporary paths, so the client gets a generic message and the cause
            # stays in the chain for logs.
            raise InvalidImage("The file could not be decoded as an image.") from exc
