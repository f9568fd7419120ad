"""Upload validation against the real-file corpus and hand-made edge cases."""

from __future__ import annotations

import contextlib
import io
import random
import struct
import zlib
from typing import Any

import pytest
from PIL import Image, ImageFile

from app.errors import (
    AppError,
    ImageDimensionsExceeded,
    InvalidFileFormat,
    InvalidImage,
    InvalidRequest,
)
from app.utils import image_validation
from app.utils.image_validation import ImageInfo, inspect_image, read_header_dimensions, sniff_content_type
from tests.conftest import CORPUS_DIR, load_corpus

ALLOWED = ("image/jpeg", "image/png")
MAX_PIXELS = 50_000_000
CORPUS = load_corpus()
ERRORS_BY_CODE: dict[str, type[AppError]] = {
    error.code: error for error in (InvalidRequest, InvalidFileFormat, InvalidImage, ImageDimensionsExceeded)
}
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}


def corpus_bytes(name: str) -> bytes:
    return (CORPUS_DIR / name).read_bytes()


def inspect_bytes(
    data: bytes,
    *,
    allowed: tuple[str, ...] = ALLOWED,
    max_pixels: int = MAX_PIXELS,
    declared: str | None = "application/octet-stream",
) -> ImageInfo:
    return inspect_image(
        io.BytesIO(data), allowed_content_types=allowed, max_pixels=max_pixels, declared_content_type=declared
    )


def make_image(image_format: str, size: tuple[int, int] = (40, 30), mode: str = "RGB", **save_options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "orange" if mode == "RGB" else 128).save(buffer, image_format, **save_options)
    return buffer.getvalue()


def png_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + chunk_type + payload + struct.pack(">I", zlib.crc32(chunk_type + payload))


def with_png_size(png: bytes, width: int, height: int) -> bytes:
    """Rewrite the IHDR size of a PNG, with a valid CRC so only the size is a lie."""
    ihdr = struct.pack(">II", width, height) + png[24:29]
    return png[:8] + png_chunk(b"IHDR", ihdr) + png[33:]


def with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOF0/SOF2 size of a JPEG written by Pillow (SOF comes after its APPn and DQT)."""
    sof = max(jpeg.find(b"\xff\xc0"), jpeg.find(b"\xff\xc2"))
    assert sof > 0
    return jpeg[: sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9 :]


# --- the corpus -------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("error")  # Pillow's warnings must not change a verdict
@pytest.mark.parametrize("case", CORPUS, ids=[case["file"] for case in CORPUS])
def test_inspect_image_gives_the_corpus_verdict(case: dict[str, Any]) -> None:
    expected = case["expected"]
    data = corpus_bytes(case["file"])

    if expected["status"] == 201:
        info = inspect_bytes(data)
        assert info == ImageInfo(
            content_type=CONTENT_TYPES[expected["stored_format"]],
            width=case["width"],
            height=case["height"],
            frames=case["frames"],
        )
    else:
        # empty.jpg expects INVALID_REQUEST: the caller answers it first, and inspect_image agrees.
        with pytest.raises(ERRORS_BY_CODE[expected["code"]]) as raised:
            inspect_bytes(data)
        assert raised.value.code == expected["code"]
        assert raised.value.status_code == expected["status"]


@pytest.mark.parametrize("case", CORPUS, ids=[case["file"] for case in CORPUS])
def test_header_dimensions_match_the_corpus(case: dict[str, Any]) -> None:
    file = io.BytesIO(corpus_bytes(case["file"]))
    content_type = CONTENT_TYPES.get(case["signature"])
    if content_type is None:
        # Not a JPEG or PNG at all: neither reader may find a size in it.
        assert read_header_dimensions(file, "image/jpeg") is None
        assert read_header_dimensions(file, "image/png") is None
    elif case["width"] is None:
        assert read_header_dimensions(file, content_type) is None
    else:
        assert read_header_dimensions(file, content_type) == (case["width"], case["height"])


def test_inspect_image_rejects_empty_input_as_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        inspect_bytes(b"")
    assert sniff_content_type(b"") is None


def test_inspect_image_leaves_the_callers_file_open_and_rewound() -> None:
    file = io.BytesIO(corpus_bytes("sugarshack.mpo"))
    file.seek(100)

    info = inspect_image(file, allowed_content_types=ALLOWED, max_pixels=MAX_PIXELS, declared_content_type=None)

    assert info.frames == 2
    assert not file.closed
    assert file.tell() == 0


def test_inspect_image_does_not_change_pillow_globals() -> None:
    max_image_pixels = Image.MAX_IMAGE_PIXELS
    for name in ("hopper.jpg", "truncated_jpeg.jpg", "png_header_100000x100000_bomb.png"):
        with contextlib.suppress(AppError):
            inspect_bytes(corpus_bytes(name))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert max_image_pixels == Image.MAX_IMAGE_PIXELS


def test_invalid_image_message_is_generic() -> None:
    with pytest.raises(InvalidImage) as raised:
        inspect_bytes(corpus_bytes("broken.png"))
    assert raised.value.message == "The file could not be decoded as an image."
    assert raised.value.details == {}
    # The cause is kept for server-side logs.
    assert raised.value.__cause__ is not None


@pytest.mark.filterwarnings("error")
def test_pillow_warning_on_a_decodable_png_does_not_reject_it() -> None:
    # An acTL chunk announcing zero frames makes Pillow warn "Invalid APNG" and fall back to the
    # still image, which decodes fine; under warnings-as-errors that warning would become a 400.
    png = make_image("PNG")
    with_bad_actl = png[:33] + png_chunk(b"acTL", struct.pack(">II", 0, 0)) + png[33:]

    assert inspect_bytes(with_bad_actl) == ImageInfo("image/png", 40, 30, 1)


# --- signature and declared type ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"\x89PNG\r\n\x1a", None),  # one byte short of the signature
        (b"\xff\xd8", None),
        (b"PNG\r\n\x1a\n", None),
        (b"RIFF\x00\x00\x00\x00WEBP", None),
        (b"GIF89a", None),
        (b"", None),
    ],
)
def test_sniff_content_type_reads_only_magic_bytes(head: bytes, expected: str | None) -> None:
    assert sniff_content_type(head) == expected


def test_png_bytes_declared_as_jpeg_are_rejected() -> None:
    with pytest.raises(InvalidFileFormat) as raised:
        inspect_bytes(make_image("PNG"), declared="image/jpeg")
    assert "image/jpeg" in raised.value.message
    assert "image/png" in raised.value.message
    assert raised.value.details == {"declared": "image/jpeg", "detected": "image/png"}


def test_jpeg_bytes_declared_as_text_are_rejected() -> None:
    with pytest.raises(InvalidFileFormat):
        inspect_bytes(make_image("JPEG"), declared="text/plain")


@pytest.mark.parametrize(
    ("image_format", "declared"),
    [
        ("JPEG", None),
        ("JPEG", ""),
        ("JPEG", "application/octet-stream"),
        ("JPEG", "image/jpeg"),
        ("JPEG", "image/jpg"),
        ("JPEG", "image/pjpeg"),
        ("JPEG", "IMAGE/JPEG"),
        ("PNG", "image/png; charset=x"),
        ("PNG", " Image/PNG ;q=1"),
        ("PNG", "image/x-png"),
        ("PNG", "application/octet-stream; name=x.jpg"),
    ],
)
def test_declared_type_that_agrees_or_says_nothing_is_accepted(image_format: str, declared: str | None) -> None:
    info = inspect_bytes(make_image(image_format), declared=declared)
    assert info.content_type == f"image/{image_format.lower()}"


def test_allowed_types_limited_to_png_reject_a_jpeg() -> None:
    with pytest.raises(InvalidFileFormat) as raised:
        inspect_bytes(make_image("JPEG"), allowed=("image/png",), declared="image/jpeg")
    assert raised.value.details == {"detected": "image/jpeg", "allowed": ["image/png"]}
    assert inspect_bytes(make_image("PNG"), allowed=("image/png",)).content_type == "image/png"


def test_unknown_bytes_are_rejected_whatever_the_declared_type() -> None:
    with pytest.raises(InvalidFileFormat) as raised:
        inspect_bytes(b"GIF89a" + bytes(100), declared="image/jpeg")
    assert raised.value.details["detected"] is None


# --- pixel limit ------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_pixel_limit_is_inclusive(image_format: str) -> None:
    data = make_image(image_format, (100, 50))

    assert inspect_bytes(data, max_pixels=5_000) == ImageInfo(f"image/{image_format.lower()}", 100, 50, 1)
    with pytest.raises(ImageDimensionsExceeded) as raised:
        inspect_bytes(data, max_pixels=4_999)
    assert raised.value.details == {"width": 100, "height": 50, "max_pixels": 4_999}


@pytest.mark.parametrize(
    ("data", "size"),
    [
        # A JPEG size field has 16 bits, so 70000 does not fit in one; the PNG field has 32.
        (with_jpeg_size(make_image("JPEG", (8, 8)), 65_535, 1), (65_535, 1)),
        (with_jpeg_size(make_image("JPEG", (8, 8), progressive=True), 1_000, 70), (1_000, 70)),
        (with_png_size(make_image("PNG", (8, 8)), 70_000, 1), (70_000, 1)),
    ],
    ids=["jpeg-65535x1", "progressive-jpeg-1000x70", "png-70000x1"],
)
def test_patched_header_size_is_what_the_limit_sees(data: bytes, size: tuple[int, int]) -> None:
    width, height = size
    assert read_header_dimensions(io.BytesIO(data), sniff_content_type(data) or "") == size

    with pytest.raises(ImageDimensionsExceeded) as raised:
        inspect_bytes(data, max_pixels=width * height - 1)
    assert raised.value.details == {"width": width, "height": height, "max_pixels": width * height - 1}

    # Exactly at the limit the header check passes; whether 8x8 worth of data then decodes into the
    # claimed size is the decoder's verdict, but it is never a dimensions error.
    try:
        inspect_bytes(data, max_pixels=width * height)
    except ImageDimensionsExceeded:  # pragma: no cover - the failure being tested for
        pytest.fail("a pixel count equal to the limit was rejected")
    except InvalidImage:
        pass


@pytest.mark.parametrize(
    ("name", "size"),
    [("jpeg_header_65500x65500_bomb.jpg", (65_500, 65_500)), ("png_header_100000x100000_bomb.png", (100_000, 100_000))],
)
def test_header_bomb_is_refused_before_pillow_opens_it(
    monkeypatch: pytest.MonkeyPatch, name: str, size: tuple[int, int]
) -> None:
    data = corpus_bytes(name)
    opened: list[object] = []
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: opened.append(args))

    assert read_header_dimensions(io.BytesIO(data), sniff_content_type(data) or "") == size
    with pytest.raises(ImageDimensionsExceeded) as raised:
        inspect_bytes(data)

    assert opened == []
    assert raised.value.details == {"width": size[0], "height": size[1], "max_pixels": MAX_PIXELS}


def test_pixel_limit_is_checked_from_pillow_when_the_header_reader_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_validation, "read_header_dimensions", lambda file, content_type: None)

    with pytest.raises(ImageDimensionsExceeded):
        inspect_bytes(make_image("PNG", (100, 50)), max_pixels=4_999)
    assert inspect_bytes(make_image("PNG", (100, 50)), max_pixels=5_000).width == 100


# --- header reader --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (3, 7), (640, 480), (2_000, 17)])
@pytest.mark.parametrize(
    ("image_format", "mode", "options"),
    [
        ("PNG", "RGB", {}),
        ("PNG", "L", {}),
        ("PNG", "RGBA", {"optimize": True}),
        ("JPEG", "RGB", {}),
        ("JPEG", "RGB", {"progressive": True}),
        ("JPEG", "L", {"comment": b"x" * 1000}),
        ("JPEG", "CMYK", {}),
        # Large APP segments before SOF must be skipped by their lengths, not searched through.
        ("JPEG", "RGB", {"icc_profile": random.Random(1).randbytes(400_000), "exif": b"Exif\x00\x00" + bytes(60_000)}),
    ],
    ids=[
        "png-rgb",
        "png-l",
        "png-rgba",
        "jpeg-baseline",
        "jpeg-progressive",
        "jpeg-gray-comment",
        "jpeg-cmyk",
        "jpeg-big-app",
    ],
)
def test_header_reader_finds_the_size_of_generated_images(
    size: tuple[int, int], image_format: str, mode: str, options: dict[str, Any]
) -> None:
    data = make_image(image_format, size, mode, **options)
    file = io.BytesIO(data)
    file.seek(5)

    assert read_header_dimensions(file, f"image/{image_format.lower()}") == size
    assert file.tell() == 5


def test_header_reader_skips_fill_bytes_and_junk_between_segments() -> None:
    jpeg = make_image("JPEG", (33, 44))
    # After SOI: junk bytes that are not a marker, a stuffed FF 00, then fill bytes before the marker.
    padded = jpeg[:2] + b"junk\xff\x00more" + b"\xff" * 20 + jpeg[2:]

    assert read_header_dimensions(io.BytesIO(padded), "image/jpeg") == (33, 44)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_header_reader_returns_none_for_every_truncation(image_format: str) -> None:
    data = make_image(image_format, (20, 10))
    content_type = f"image/{image_format.lower()}"
    sof_end = max(data.find(b"\xff\xc0"), 0) + 9 if image_format == "JPEG" else 24

    for cut in range(sof_end):
        assert read_header_dimensions(io.BytesIO(data[:cut]), content_type) is None, cut
    assert read_header_dimensions(io.BytesIO(data[:sof_end]), content_type) == (20, 10)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xd8",
        b"\xff\xd8" + b"\xff" * 100_000,  # fill bytes forever, no marker
        b"\xff\xd8\xff\xe0\x00\x00",  # a segment length below its own two bytes
        b"\xff\xd8\xff\xe0\x00\x01",
        b"\xff\xd8\xff\xe0\xff\xff",  # a segment that runs past the end of the file
        b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\xff\xc0\x00\x0b\x08\x00\x10\x00\x10",  # SOF after SOS
        b"\xff\xd8\xff\xd9\xff\xc0\x00\x0b\x08\x00\x10\x00\x10",  # SOF after EOI
        b"\xff\xd8\xff\xc0\x00\x0b\x08\x00\x00\x00\x10\x01\x01\x11\x00",  # height 0 (deferred to DNL)
        b"\xff\xd8\xff\xc0\x00\x05\x08\x00\x10\x00\x10",  # SOF shorter than its own fields
        b"\xff\xd8" + b"\xff\xfe\x00\x02" * 20_000 + b"\xff\xc0\x00\x0b\x08\x00\x10\x00\x10",  # too many segments
        b"\xff\xd8" + b"\x00" * 200_000,
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDX\x00\x00\x00\x10\x00\x00\x00\x10",  # first chunk is not IHDR
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x00\x00\x00\x00\x10",  # width 0
        b"garbage that is no image at all",
    ],
    ids=lambda data: f"{len(data)}-bytes-{data[:12]!r}",
)
def test_header_reader_returns_none_for_broken_headers(data: bytes) -> None:
    assert read_header_dimensions(io.BytesIO(data), "image/jpeg") is None
    assert read_header_dimensions(io.BytesIO(data), "image/png") is None


def test_header_reader_survives_random_garbage() -> None:
    rng = random.Random(20_240_601)
    for _ in range(300):
        garbage = rng.randbytes(rng.randrange(0, 2_000))
        for prefix, content_type in ((b"\xff\xd8", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png")):
            size = read_header_dimensions(io.BytesIO(prefix + garbage), content_type)
            assert size is None or (size[0] > 0 and size[1] > 0)


def test_header_reader_ignores_unknown_content_types() -> None:
    assert read_header_dimensions(io.BytesIO(make_image("PNG")), "image/gif") is None
