"""Which formats an upload may be: told by its magic bytes, held against the declared type and the allowed types."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from app.errors import InvalidFileFormat
from app.media.formats import ALL_CONTENT_TYPES, family, sniff_content_type
from tests.conftest import corpus_bytes
from tests.unit.upload_pipeline import prepare, validate


def make_image(image_format: str, size: tuple[int, int] = (40, 30), **save_options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "orange").save(buffer, image_format, **save_options)
    return buffer.getvalue()


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    size = 16 + 4 * len(compatible)
    return size.to_bytes(4, "big") + b"ftyp" + major + bytes(4) + b"".join(compatible)


# One file per detected type; HEIC and HEIF from the corpus (Pillow writes neither).
SAMPLES = {
    "image/jpeg": lambda: make_image("JPEG"),
    "image/png": lambda: make_image("PNG"),
    "image/gif": lambda: make_image("GIF"),
    "image/webp": lambda: make_image("WEBP"),
    "image/avif": lambda: make_image("AVIF"),
    "image/heic": lambda: corpus_bytes("heic_static.heic"),
    "image/heif": lambda: corpus_bytes("heif_mif1_brand_only.heif"),
}


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"\xff\xd8", None),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"\x89PNG\r\n\x1a", None),  # one byte short of the signature
        (b"PNG\r\n\x1a\n", None),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"GIF88a", None),
        (b"RIFF\x00\x00\x00\x00WEBP", "image/webp"),
        (b"RIFF\x00\x00\x00\x00WAVE", None),
        (ftyp(b"avif", b"mif1", b"miaf"), "image/avif"),
        (ftyp(b"mif1", b"avif"), "image/avif"),  # a compatible AVIF brand wins over mif1
        (ftyp(b"heic", b"mif1"), "image/heic"),
        (ftyp(b"mif1", b"heic"), "image/heic"),
        (ftyp(b"mif1", b"miaf"), "image/heif"),
        (ftyp(b"avif", b"heic"), "image/avif"),  # the major brand decides
        (ftyp(b"heic", b"avif"), "image/heic"),
        (ftyp(b"isom", b"mp41"), None),  # an MP4 video
        (ftyp(b"avif")[:4] + b"ftyp" + b"avif" + bytes(2), None),  # box cut short
        (b"\x00\x00\x00\x11ftypavif\x00\x00\x00\x00mif1", None),  # box size not a multiple of 4
        (b"", None),
    ],
)
def test_sniff_content_type_reads_only_magic_bytes(head: bytes, expected: str | None) -> None:
    assert sniff_content_type(head) == expected


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("image/jpg", "image/jpeg"),
        ("image/pjpeg", "image/jpeg"),
        ("image/x-png", "image/png"),
        ("image/apng", "image/png"),
        ("image/x-webp", "image/webp"),
        ("image/avif-sequence", "image/avif"),
        ("image/heic", "image/heif"),
        ("image/heic-sequence", "image/heif"),
        ("image/heif-sequence", "image/heif"),
        ("image/gif", "image/gif"),
        ("image/svg+xml", "image/svg+xml"),
    ],
)
def test_family_folds_the_names_clients_use(declared: str, expected: str) -> None:
    assert family(declared) == expected


@pytest.mark.parametrize(
    ("detected", "declared"),
    [
        ("image/jpeg", None),
        ("image/jpeg", ""),
        ("image/jpeg", "application/octet-stream"),
        ("image/jpeg", "application/octet-stream; name=x.png"),
        # Only image/ and text/ types make a claim about the contents.
        ("image/jpeg", "binary/octet-stream"),
        ("image/jpeg", "application/x-anything"),
        ("image/jpeg", "multipart/mixed"),
        ("image/jpeg", "image/jpeg"),
        ("image/jpeg", "image/jpg"),
        ("image/jpeg", "IMAGE/JPG"),
        ("image/jpeg", "image/pjpeg"),
        ("image/png", "image/png; charset=x"),
        ("image/png", " Image/PNG ;q=1"),
        ("image/png", "image/x-png"),
        ("image/png", "image/apng"),
        ("image/gif", "image/gif"),
        ("image/webp", "image/webp"),
        ("image/webp", "image/x-webp"),
        ("image/avif", "image/avif"),
        ("image/avif", "image/avif-sequence"),
        # HEIC is HEIF with HEVC inside: either name fits either file.
        ("image/heic", "image/heic"),
        ("image/heic", "image/heif"),
        ("image/heif", "image/heif"),
        ("image/heif", "image/heic"),
        ("image/heif", "image/heic-sequence"),
    ],
)
def test_a_declared_type_that_agrees_or_says_nothing_is_accepted(detected: str, declared: str | None) -> None:
    assert validate(SAMPLES[detected](), declared=declared).content_type == detected


@pytest.mark.parametrize(
    ("detected", "declared"),
    [
        ("image/png", "image/jpeg"),
        ("image/png", "image/webp"),
        ("image/jpeg", "image/png"),
        ("image/jpeg", "text/plain"),
        ("image/jpeg", "text/html; charset=utf-8"),
        ("image/jpeg", "image/svg+xml"),
        ("image/gif", "image/png"),
        ("image/webp", "image/gif"),
        ("image/avif", "image/heic"),
        ("image/heic", "image/avif"),
        ("image/heif", "image/jpeg"),
    ],
)
def test_a_declared_type_that_contradicts_the_contents_is_refused(detected: str, declared: str) -> None:
    with pytest.raises(InvalidFileFormat) as raised:
        prepare(SAMPLES[detected](), declared=declared)

    normalised = declared.split(";")[0].strip()
    assert raised.value.details == {"declared": normalised, "detected": detected}
    assert normalised in raised.value.message
    assert detected in raised.value.message


def test_a_long_declared_type_is_shortened_in_the_answer() -> None:
    declared = "image/" + "x" * 5_000

    with pytest.raises(InvalidFileFormat) as raised:
        prepare(make_image("PNG"), declared=declared)

    assert raised.value.details["declared"] == declared[:100]
    assert len(raised.value.message) < 300


def test_narrowed_allowed_types_refuse_a_webp_and_say_what_is_allowed() -> None:
    allowed = ("image/png", "image/jpeg")

    with pytest.raises(InvalidFileFormat) as raised:
        prepare(make_image("WEBP"), allowed=allowed, declared="image/webp")

    assert raised.value.details == {"detected": "image/webp", "allowed": ["image/jpeg", "image/png"]}
    assert "only its contents count" in raised.value.message
    assert validate(make_image("PNG"), allowed=allowed).content_type == "image/png"


@pytest.mark.parametrize("content_type", ALL_CONTENT_TYPES)
def test_every_type_is_refused_once_it_is_not_allowed(content_type: str) -> None:
    others = [allowed for allowed in ALL_CONTENT_TYPES if allowed != content_type]

    with pytest.raises(InvalidFileFormat) as raised:
        prepare(SAMPLES[content_type](), allowed=others)

    assert raised.value.details["detected"] == content_type


@pytest.mark.parametrize(
    "data",
    [
        b"GIF88a" + bytes(100),
        b"BM" + bytes(100),  # BMP
        b"II*\x00" + bytes(100),  # TIFF
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"%PDF-1.7\n",
        ftyp(b"isom", b"mp41") + bytes(100),
        corpus_bytes("pngtest_bad.png.bin"),  # a PNG missing its first byte
    ],
    ids=["gif88a", "bmp", "tiff", "svg", "pdf", "mp4", "png-without-first-byte"],
)
def test_bytes_of_no_accepted_format_are_refused_whatever_the_declared_type(data: bytes) -> None:
    with pytest.raises(InvalidFileFormat) as raised:
        prepare(data, declared="image/jpeg")
    assert raised.value.details["detected"] is None
