"""Decide whether uploaded bytes are an acceptable JPEG or PNG, cheapest check first.

The checks run in the order of the upload contract: magic bytes, the declared Content-Type, the pixel
count read straight from the header (PNG IHDR / JPEG SOF, before any decoding), and finally a full
decode of every frame. Everything here is synchronous and CPU-bound; callers run it in a worker
thread (`anyio.to_thread`).

Empty input is the caller's job (it answers `InvalidRequest` before calling in), but `inspect_image`
raises the same `InvalidRequest` defensively, so a forgotten check still yields the contract's answer.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import BinaryIO, Final

from PIL import Image

from app.errors import ImageDimensionsExceeded, InvalidFileFormat, InvalidImage, InvalidRequest
from app.utils.thumbnail_plan import DecodedFrame, plan_thumbnail

JPEG: Final = "image/jpeg"
PNG: Final = "image/png"

_JPEG_SIGNATURE: Final = b"\xff\xd8\xff"
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_SNIFF_BYTES: Final = len(_PNG_SIGNATURE)

# Declared types that clients send for our formats. Old IE sent image/pjpeg and image/x-png, and
# image/jpg is a common typo that browsers and libraries still produce.
_CONTENT_TYPE_ALIASES: Final[dict[str, str]] = {
    "image/jpg": JPEG,
    "image/pjpeg": JPEG,
    "image/x-png": PNG,
}
# A declared type that says nothing about the contents: nothing to contradict.
_UNINFORMATIVE_CONTENT_TYPES: Final = frozenset({"", "application/octet-stream"})

# Restricting Image.open to the sniffed format keeps every other Pillow plugin away from hostile
# input. MPO files are opened by the JPEG plugin (it returns an MpoImageFile), so "JPEG" covers them.
_PILLOW_FORMATS: Final[dict[str, tuple[str, ...]]] = {JPEG: ("JPEG",), PNG: ("PNG",)}

# SOF0-SOF15 carry the frame size; C4 (DHT), C8 (JPG, reserved) and CC (DAC) share the range but don't.
_JPEG_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SOS: Final = 0xDA
_JPEG_EOI: Final = 0xD9
# TEM and RST0-RST7 stand alone: no length field follows them.
_JPEG_STANDALONE_MARKERS: Final = frozenset({0x01, *range(0xD0, 0xD8)})
# Every segment moves the scan forward by at least two bytes, so these caps end the walk on any
# input, however hostile, long before it could cost anything; real files need a few dozen segments.
_JPEG_MAX_SEGMENTS: Final = 10_000
_JPEG_MAX_SCAN_BYTES: Final = 64 * 1024 * 1024
_JUNK_CHUNK_BYTES: Final = 4096
# Draft mode decodes at 1/8 scale: the whole entropy-coded stream is still read (so truncation and
# corruption are still found), but the inverse DCT and colour conversion cost a fraction.
_JPEG_DRAFT_SCALE: Final = 8


@dataclass(frozen=True)
class ImageInfo:
    """What validation learnt about an accepted image; width/height are as stored (before EXIF rotation)."""

    content_type: str
    width: int
    height: int
    frames: int
    # A single-frame JPEG decoded at the thumbnail's scale, when asked for: the thumbnail job starts here.
    decoded: DecodedFrame | None = field(default=None, repr=False, compare=False)


def sniff_content_type(head: bytes) -> str | None:
    """Return the content type that the leading magic bytes prove, or None."""
    if head.startswith(_JPEG_SIGNATURE):
        return JPEG
    if head.startswith(_PNG_SIGNATURE):
        return PNG
    return None


def read_header_dimensions(file: BinaryIO, content_type: str) -> tuple[int, int] | None:
    """Return (width, height) from the PNG IHDR or JPEG SOF without decoding; None if unreadable."""
    original_position = file.tell()
    try:
        file.seek(0)
        if content_type == PNG:
            return _png_dimensions(file)
        if content_type == JPEG:
            return _jpeg_dimensions(file)
        return None
    except (OSError, ValueError, struct.error):
        return None
    finally:
        file.seek(original_position)


def inspect_image(
    file: BinaryIO,
    *,
    allowed_content_types: Collection[str],
    max_pixels: int,
    declared_content_type: str | None,
    thumbnail_side: int | None = None,
) -> ImageInfo:
    """Validate an upload (signature, declared type, header pixel count, full decode) and describe it.

    With `thumbnail_side`, a single-frame JPEG is decoded at the scale a thumbnail of that size
    needs (instead of 1/8) and kept in the result, so it is decoded only once.
    """
    try:
        file.seek(0)
        head = file.read(_SNIFF_BYTES)
        if not head:
            raise InvalidRequest("The uploaded file is empty.")

        detected = sniff_content_type(head)
        if detected is None or detected not in allowed_content_types:
            raise InvalidFileFormat(
                "The file is not an allowed image type; only its contents count, not its name.",
                details={"detected": detected, "allowed": sorted(allowed_content_types)},
            )
        _check_declared_content_type(declared_content_type, detected)

        header_size = read_header_dimensions(file, detected)
        if header_size is not None:
            _check_pixel_count(*header_size, max_pixels=max_pixels)

        width, height, frames, decoded = _decode_every_frame(file, detected, header_size, max_pixels, thumbnail_side)
        return ImageInfo(content_type=detected, width=width, height=height, frames=frames, decoded=decoded)
    finally:
        file.seek(0)


def _check_declared_content_type(declared: str | None, detected: str) -> None:
    if declared is None:
        return
    # Parameters such as "; charset=binary" say nothing about the image format.
    normalised = declared.split(";", 1)[0].strip().lower()
    # Only a declared image or text type makes a claim about the contents (issue 2); anything else
    # (octet-stream, binary/octet-stream from some tools, ...) is accepted and the bytes decide.
    if normalised in _UNINFORMATIVE_CONTENT_TYPES or not normalised.startswith(("image/", "text/")):
        return
    normalised = _CONTENT_TYPE_ALIASES.get(normalised, normalised)
    if normalised != detected:
        # The declared value is client input that ends up in a response: keep it short.
        shown = normalised[:100]
        raise InvalidFileFormat(
            f"The declared content type {shown!r} does not match the file's contents ({detected}).",
            details={"declared": shown, "detected": detected},
        )


# Animated and multi-picture files: a cap on frames and on all frames' pixels together, so one
# small file cannot make the decoder work through hundreds of full-size frames.
MAX_FRAMES = 1000
TOTAL_PIXELS_FACTOR = 2


def _check_pixel_count(width: int, height: int, *, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageDimensionsExceeded(
            f"The image is {width}x{height} pixels; at most {max_pixels} pixels are allowed.",
            details={"width": width, "height": height, "max_pixels": max_pixels},
        )


def _decode_every_frame(
    file: BinaryIO,
    content_type: str,
    header_size: tuple[int, int] | None,
    max_pixels: int,
    thumbnail_side: int | None,
) -> tuple[int, int, int, DecodedFrame | None]:
    """Open and load every frame; return (width, height, frames, kept frame) or raise InvalidImage."""
    decoded = None
    file.seek(0)
    with warnings.catch_warnings():
        # Pillow warns about bombs and odd-but-readable files; the checks here are the verdict, and a
        # process running with warnings-as-errors must not turn a warning into a rejection. Only
        # Pillow's warnings are silenced: catch_warnings swaps process-wide state, so if two threads
        # interleave the filters this leaves behind can only ever mute Pillow.
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
        try:
            with Image.open(file, formats=_PILLOW_FORMATS[content_type]) as image:
                if header_size is None:
                    # Our header reader gave up but Pillow found a size: it must pass the same limit
                    # before a single pixel is allocated.
                    header_size = image.size
                    _check_pixel_count(*header_size, max_pixels=max_pixels)
                frames: int = getattr(image, "n_frames", 1)
                if image.format == "JPEG" and frames == 1 and thumbnail_side is not None:
                    plan = plan_thumbnail(image, thumbnail_side)
                    image.load()
                    decoded = DecodedFrame(image.copy(), plan)
                elif image.format == "JPEG" and frames == 1:
                    width, height = image.size
                    image.draft(image.mode, (max(1, width // _JPEG_DRAFT_SCALE), max(1, height // _JPEG_DRAFT_SCALE)))
                    image.load()
                else:
                    # Draft mode is only sound for plain JPEG (it breaks MPO's later frames), and a
                    # pipeline that only reads frame 0 would accept files whose later frames are broken.
                    # Every frame has its own size (MPO frames carry their own SOF), so each one passes
                    # the pixel limit before it is decoded, and all of them together a budget.
                    if frames > MAX_FRAMES:
                        raise ImageDimensionsExceeded(
                            f"The image has {frames} frames; at most {MAX_FRAMES} are allowed.",
                            details={"frames": frames, "max_frames": MAX_FRAMES},
                        )
                    decoded_pixels = 0
                    for index in range(frames):
                        image.seek(index)
                        _check_pixel_count(*image.size, max_pixels=max_pixels)
                        decoded_pixels += image.size[0] * image.size[1]
                        if decoded_pixels > max_pixels * TOTAL_PIXELS_FACTOR:
                            raise ImageDimensionsExceeded(
                                "The image's frames together have too many pixels.",
                                details={"max_total_pixels": max_pixels * TOTAL_PIXELS_FACTOR},
                            )
                        image.load()
        except ImageDimensionsExceeded:
            raise
        except Exception as exc:
            # Pillow raises OSError, SyntaxError, ValueError, struct.error, DecompressionBombError (a
            # bare Exception) and more; all mean "not a usable image". Its messages can name temporary
            # paths, so the client gets a generic message and the cause stays in the chain for logs.
            raise InvalidImage("The file could not be decoded as an image.") from exc
    width, height = header_size
    return width, height, frames, decoded


def _png_dimensions(file: BinaryIO) -> tuple[int, int] | None:
    # Signature (8) + IHDR length (4) + type (4) + width (4) + height (4); IHDR must come first.
    data = file.read(24)
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return _positive(width, height)


def _jpeg_dimensions(file: BinaryIO) -> tuple[int, int] | None:
    if file.read(2) != b"\xff\xd8":
        return None
    for _ in range(_JPEG_MAX_SEGMENTS):
        marker = _next_jpeg_marker(file)
        if marker is None or marker in (_JPEG_SOS, _JPEG_EOI):
            # Past SOS comes entropy-coded data: a file without SOF before it has no usable size.
            return None
        if marker in _JPEG_STANDALONE_MARKERS:
            continue
        length_bytes = file.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if length < 2:
            return None
        if marker in _JPEG_SOF_MARKERS:
            # Length (2) + sample precision (1) + height (2) + width (2), at least.
            frame_header = file.read(5)
            if length < 7 or len(frame_header) < 5:
                return None
            _precision, height, width = struct.unpack(">BHH", frame_header)
            return _positive(width, height)
        file.seek(length - 2, io.SEEK_CUR)
        if file.tell() > _JPEG_MAX_SCAN_BYTES:
            return None
    return None


def _next_jpeg_marker(file: BinaryIO) -> int | None:
    """Return the next marker code, skipping junk before the 0xFF and any 0xFF fill bytes."""
    while True:
        if not _skip_to_ff(file):
            return None
        byte = file.read(1)
        while byte == b"\xff":
            byte = file.read(1)
        if not byte:
            return None
        # FF 00 is a stuffed byte, not a marker: junk here, so keep looking (as libjpeg and Pillow do).
        if byte != b"\x00":
            return byte[0]


def _skip_to_ff(file: BinaryIO) -> bool:
    """Consume bytes up to and including the next 0xFF; False at end of file or past the scan cap."""
    while file.tell() <= _JPEG_MAX_SCAN_BYTES:
        chunk = file.read(_JUNK_CHUNK_BYTES)
        if not chunk:
            return False
        found = chunk.find(b"\xff")
        if found >= 0:
            file.seek(found + 1 - len(chunk), io.SEEK_CUR)
            return True
    return False


def _positive(width: int, height: int) -> tuple[int, int] | None:
    # Zero is not a size (a JPEG height of 0 defers it to a DNL marker): let the decoder judge those.
    if width > 0 and height > 0:
        return width, height
    return None
