"""Broken and hostile files: stripping either works or says MalformedContainer, the census says None or a size.

Never another exception (IndexError, struct.error, RecursionError...): every file made here is cut
at every offset, has its header bytes flipped, and is mutated at random. What does strip must strip
to a fixed point, however odd the input.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import PngImagePlugin

from app.media import formats
from app.media.census import take_census
from app.media.containers import MalformedContainer
from app.media.metadata import strip_metadata
from tests.unit.media import heif_files, samples
from tests.unit.media.heif_files import Layout

# Enough for every header and table of the files below; the rest is coded pixels.
HEADER_BYTES = 400
SAMPLES = (
    "jpeg",
    "png",
    "apng",
    "gif",
    "webp",
    "webp-animated",
    "avif",
    "avif-animated",
    "avif-idat",
    "avif-64-bit",
    "heic",
)


@functools.cache
def sample_files() -> dict[str, tuple[str, bytes]]:
    """Small files with metadata in every place a format keeps it: name -> (content type, bytes)."""
    picture = samples.photo((24, 16))
    frames = [samples.photo((24, 16), seed=seed) for seed in range(3)]
    exif = samples.exif_tiff(orientation=6)
    jpeg = samples.with_segments(
        samples.encode(picture, "JPEG", progressive=True, restart_marker_blocks=1),
        [samples.exif_segment(exif), samples.xmp_segment(), samples.iptc_segment(), samples.segment(0xFE, b"c")],
    )
    coded = heif_files.coded_image(picture)
    return {
        "jpeg": (formats.JPEG, jpeg),
        "png": (formats.PNG, samples.encode(picture, "PNG", exif=exif, pnginfo=_text())),
        "apng": (formats.PNG, samples.encode_frames(frames, "PNG", pnginfo=_text())),
        "gif": (formats.GIF, samples.encode_frames([f.convert("P") for f in frames], "GIF", comment=b"c", loop=0)),
        "webp": (formats.WEBP, samples.encode(picture, "WEBP", exif=exif, xmp=samples.XMP)),
        "webp-animated": (formats.WEBP, samples.encode_frames(frames, "WEBP", exif=exif, lossless=True)),
        "avif": (formats.AVIF, samples.encode(picture, "AVIF", exif=b"Exif\0\0" + exif, xmp=samples.XMP)),
        "avif-animated": (formats.AVIF, samples.encode_frames(frames, "AVIF", xmp=samples.XMP)),
        "avif-idat": (
            formats.AVIF,
            heif_files.assemble(
                coded, exif, samples.XMP, Layout(iloc_version=1, metadata_in_idat=True, thumbnail=True)
            ),
        ),
        "avif-64-bit": (formats.AVIF, heif_files.assemble(coded, exif, samples.XMP, Layout(large_sizes=True))),
        "heic": (formats.HEIC, samples.encode(picture, "HEIF", exif=b"Exif\0\0" + exif, xmp=samples.XMP)),
    }


def _text() -> PngImagePlugin.PngInfo:
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "c", zip=True)
    return text


def survives(data: bytes, content_type: str) -> None:
    """Strip and take a census; only the documented outcomes are allowed (pytest reports anything else)."""
    take_census(data, content_type, max_frames=10)
    try:
        stripped = strip_metadata(data, content_type)
    except MalformedContainer:
        return
    assert strip_metadata(stripped, content_type) == stripped


def truncations(data: bytes) -> Iterator[bytes]:
    step = max(1, len(data) // 1500)
    for end in range(0, len(data), step):
        yield data[:end]


def header_flips(data: bytes) -> Iterator[bytes]:
    for position in range(min(len(data), HEADER_BYTES)):
        original = data[position]
        for value in {0x00, 0xFF, original ^ 0x80, (original + 1) % 256}:
            yield data[:position] + bytes([value]) + data[position + 1 :]


@pytest.mark.parametrize("name", SAMPLES)
def test_every_truncation_is_stripped_or_malformed(name: str) -> None:
    content_type, data = sample_files()[name]
    for cut in truncations(data):
        survives(cut, content_type)


@pytest.mark.parametrize("name", SAMPLES)
def test_every_flipped_header_byte_is_stripped_or_malformed(name: str) -> None:
    content_type, data = sample_files()[name]
    for mutated in header_flips(data):
        survives(mutated, content_type)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    name=st.sampled_from(SAMPLES),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=8)), max_size=4),
    cut=st.floats(0.5, 1),
)
def test_random_damage_is_stripped_or_malformed(name: str, edits: list[tuple[float, bytes]], cut: float) -> None:
    content_type, data = sample_files()[name]
    mutated = bytearray(data[: int(len(data) * cut)])
    for where, replacement in edits:
        at = int(where * len(mutated))
        mutated[at : at + len(replacement)] = replacement
    survives(bytes(mutated), content_type)


@pytest.mark.parametrize("content_type", formats.ALL_CONTENT_TYPES)
@settings(derandomize=True, max_examples=100, deadline=None)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_are_stripped_or_malformed(content_type: str, data: bytes) -> None:
    for prefix in (b"", b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\xff\0\0\0WEBPVP8X", b"\0\0\0\x10ftyp"):
        survives(prefix + data, content_type)
