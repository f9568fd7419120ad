"""Sizes and frame counts read from the headers, before any pixel is decoded.

Limits on pixels and frames are checked against the census first, so that a small hostile file
cannot make the decoder allocate a huge canvas or work through thousands of frames. The census is
read as the decoder will read the file (the canvas a GIF grows to, the frame count Pillow reports)
and counting stops once a file has more frames than any limit allows, so it stays cheap.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from app.media import formats
from app.media.containers import MalformedContainer, gif, isobmff, jpeg, png, riff
from app.media.containers.isobmff import Box

# Real files have a few chunks or blocks beside each frame; a file with far more is hostile, and
# counting through it costs more than letting the decoder (with its own limits) judge it.
_MAX_CHUNKS_BEFORE_IDAT: Final = 10_000
_MAX_BLOCKS_PER_FRAME: Final = 8
_MAX_BLOCKS_BESIDE_FRAMES: Final = 10_000
# An image file has a handful of top-level boxes; `meta` and `moov` come among the first.
_MAX_TOP_LEVEL_BOXES: Final = 1_000
# APNG frame counts Pillow takes as valid; outside them it shows the default image alone.
_MAX_APNG_FRAMES: Final = 2**31
_ANIMATION_FLAG: Final = 0x02
_VP8_START_CODE: Final = b"\x9d\x01\x2a"
_VP8L_SIGNATURE: Final = 0x2F


@dataclass(frozen=True)
class Census:
    """What the headers say a decoder will produce."""

    width: int  # the picture as stored (before any orientation): the canvas, or the primary image
    height: int
    frames: int  # frames a decoder will produce; counting stops at max_frames + 1
    animation_pixels: int  # sum over frames of the area each frame is decoded at
    # What the decoder allocates for a frame, when more than the picture: HEIF and AVIF code whole
    # blocks (x265 pads to 64 rows) and crop them with a clean aperture (`clap`) afterwards.
    coded_size: tuple[int, int] | None = None

    @property
    def frame_pixels(self) -> int:
        """The pixels one frame costs to decode."""
        width, height = self.coded_size or (self.width, self.height)
        return width * height


def take_census(data: bytes, content_type: str, *, max_frames: int) -> Census | None:
    """Sizes and frames from the headers; None when they give no usable size (the decoder will judge)."""
    reader = _READERS.get(formats.family(content_type))
    if reader is None:
        return None
    try:
        census = reader(memoryview(data), max_frames + 1)
    except MalformedContainer:
        return None
    if census is None or census.width <= 0 or census.height <= 0:
        return None
    return census


def _animation(width: int, height: int, frames: int) -> Census:
    """Frames that are each decoded at the full canvas size."""
    return Census(width, height, frames, width * height * frames)


def _jpeg_census(data: memoryview, frame_limit: int) -> Census | None:
    for segment in jpeg.iter_segments(data):
        if segment.marker in jpeg.SOF_MARKERS:
            # Sample precision (1), then the height and width (2 each).
            if segment.end - segment.payload_start < 5:
                return None
            height, width = struct.unpack_from(">HH", data, segment.payload_start + 1)
            return _animation(width, height, 1)
        if segment.marker in (jpeg.SOS, jpeg.EOI):
            # Past SOS comes entropy-coded data: a file without SOF before it has no usable size.
            return None
    return None


def _png_census(data: memoryview, frame_limit: int) -> Census | None:
    # Signature, IHDR length and type, width and height: IHDR must come first.
    if len(data) < 24 or bytes(data[:8]) != png.SIGNATURE or bytes(data[12:16]) != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    frames = _apng_frames(data)
    return None if frames is None else _animation(width, height, min(frames, frame_limit))


def _apng_frames(data: memoryview) -> int | None:
    """acTL's frame count when it comes before the image data, as Pillow's n_frames reports it.

    None for a hostile run of chunks before the image data.
    """
    frames = 1
    action_controls = 0
    try:
        for count, chunk in enumerate(png.iter_chunks(data)):
            if count > _MAX_CHUNKS_BEFORE_IDAT:
                return None
            if chunk.type == b"IDAT":
                break
            if chunk.type == b"acTL" and chunk.payload_end - chunk.payload_start >= 8:
                action_controls += 1
                (frames,) = struct.unpack_from(">I", data, chunk.payload_start)
    except MalformedContainer:
        pass  # a file cut short: the decoder will fail on it, and the size still stands
    # Pillow shows the default image alone when acTL is repeated or its count is out of range.
    return frames if action_controls == 1 and 0 < frames <= _MAX_APNG_FRAMES else 1


def _gif_census(data: memoryview, frame_limit: int) -> Census | None:
    screen = gif.read_screen(data)
    width, height = screen.width, screen.height
    frames = pixels = 0
    max_blocks = _MAX_BLOCKS_PER_FRAME * frame_limit + _MAX_BLOCKS_BESIDE_FRAMES
    try:
        for count, block in enumerate(gif.iter_blocks(data, screen.end)):
            if count >= max_blocks:
                return None
            if isinstance(block, gif.ImageBlock):
                # Pillow grows the canvas to take in a frame that reaches past it, then decodes
                # that frame and every later one at the grown size.
                width = max(width, block.left + block.width)
                height = max(height, block.top + block.height)
                frames += 1
                pixels += width * height
                if frames >= frame_limit:
                    break
    except MalformedContainer:
        pass  # frames up to the damage are what a decoder gets through
    return Census(width, height, frames, pixels)


def _webp_census(data: memoryview, frame_limit: int) -> Census | None:
    # RIFF header (12), the first chunk's header (8) and the 10 bytes that give any bitstream's size.
    if len(data) < 30 or bytes(data[:4]) != b"RIFF" or bytes(data[8:12]) != b"WEBP":
        return None
    # A file cut short still has its headers; the decoder will judge the rest.
    riff_end = min(8 + struct.unpack_from("<I", data, 4)[0], len(data))
    fourcc = bytes(data[12:16])
    payload = riff.HEADER_SIZE + 8
    if fourcc == b"VP8 ":
        # A key frame (bit 0 of the frame tag clear), the start code, then 14-bit width and height.
        if data[payload] & 1 or bytes(data[payload + 3 : payload + 6]) != _VP8_START_CODE:
            return None
        width, height = struct.unpack_from("<HH", data, payload + 6)
        return _animation(width & 0x3FFF, height & 0x3FFF, 1)
    if fourcc == b"VP8L":
        if data[payload] != _VP8L_SIGNATURE:
            return None
        (bits,) = struct.unpack_from("<I", data, payload + 1)
        return _animation((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 1)
    if fourcc != b"VP8X":
        return None
    flags = data[payload]
    width = 1 + int.from_bytes(data[payload + 4 : payload + 7], "little")
    height = 1 + int.from_bytes(data[payload + 7 : payload + 10], "little")
    if not flags & _ANIMATION_FLAG:
        return _animation(width, height, 1)
    frames = _count_webp_frames(data, riff_end, frame_limit)
    return None if frames is None else _animation(width, height, frames)


def _count_webp_frames(data: memoryview, riff_end: int, frame_limit: int) -> int | None:
    """ANMF chunks, each a frame decoded onto the whole canvas; None for a hostile run of other chunks."""
    frames = 0
    try:
        for count, chunk in enumerate(riff.iter_chunks(data, riff.HEADER_SIZE, riff_end)):
            if count - frames > _MAX_BLOCKS_BESIDE_FRAMES:
                return None
            if chunk.fourcc == b"ANMF":
                frames += 1
                if frames >= frame_limit:
                    break
    except MalformedContainer:
        pass  # frames up to the damage are what a decoder gets through
    return frames


def _isobmff_census(data: memoryview, frame_limit: int) -> Census | None:
    meta = movie = None
    try:
        for box in itertools.islice(isobmff.iter_boxes(data, 0, len(data)), _MAX_TOP_LEVEL_BOXES):
            if box.type == b"meta" and meta is None:
                meta = box
            elif box.type == b"moov" and movie is None:
                movie = box
    except MalformedContainer:
        pass  # boxes before the damage still describe the file; the decoder will judge the rest
    sizes = _primary_item_sizes(data, meta) if meta is not None else None
    if sizes is None:
        return None
    coded, (width, height) = sizes
    frames = min(_track_samples(data, movie) if movie is not None else 1, frame_limit)
    cropped = (width, height) != coded
    return Census(width, height, frames, coded[0] * coded[1] * frames, coded_size=coded if cropped else None)


def _primary_item_sizes(data: memoryview, meta: Box) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The primary item's (`pitm`) coded size (`ispe`) and picture size (cropped by its `clap`, if any)."""
    pitm = isobmff.find_child(data, meta, b"pitm", full=True)
    iprp = isobmff.find_child(data, meta, b"iprp", full=True)
    if pitm is None or iprp is None:
        return None
    primary = isobmff.read_pitm(data, pitm)
    boxes = list(isobmff.children(data, iprp))
    properties = next((list(isobmff.children(data, box)) for box in boxes if box.type == b"ipco"), [])
    associated = [
        properties[index - 1]
        for box in boxes
        if box.type == b"ipma"
        for association in isobmff.read_ipma(data, box)
        if association.item_id == primary
        # Indices count from 1; 0 means "no property".
        for index in association.property_indices
        if 0 < index <= len(properties)
    ]
    ispe = next((box for box in associated if box.type == b"ispe"), None)
    if ispe is None:
        return None
    coded = isobmff.read_ispe(data, ispe)
    clap = next((box for box in associated if box.type == b"clap"), None)
    return coded, (_clean_aperture(data, clap, coded) if clap is not None else coded)


def _clean_aperture(data: memoryview, clap: Box, coded: tuple[int, int]) -> tuple[int, int]:
    """The size a `clap` crops the coded picture to (rounded as libheif does); the coded size if it makes none."""
    reader = isobmff.FieldReader(data, clap.payload_start, clap.end)
    try:
        width_n, width_d, height_n, height_d = (reader.uint(4) for _ in range(4))
    except MalformedContainer:
        return coded
    if not (width_d and height_d):
        return coded
    width, height = (width_n * 2 + width_d) // (2 * width_d), (height_n * 2 + height_d) // (2 * height_d)
    if not (0 < width <= coded[0] and 0 < height <= coded[1]):
        return coded
    return width, height


def _track_samples(data: memoryview, movie: Box) -> int:
    """The sample count of the first track that has samples (an image sequence's frames); else 1."""
    for trak in isobmff.children(data, movie):
        if trak.type != b"trak":
            continue
        sample_table = isobmff.descend(data, trak, isobmff.SAMPLE_TABLE_PATH)
        if sample_table is None:
            continue
        for box in isobmff.children(data, sample_table):
            if box.type in (b"stsz", b"stz2"):
                samples = isobmff.read_sample_count(data, box)
                if samples > 0:
                    return samples
    return 1


_READERS: Final[dict[str, Callable[[memoryview, int], Census | None]]] = {
    formats.JPEG: _jpeg_census,
    formats.PNG: _png_census,
    formats.GIF: _gif_census,
    formats.WEBP: _webp_census,
    formats.AVIF: _isobmff_census,
    formats.HEIF: _isobmff_census,
}
