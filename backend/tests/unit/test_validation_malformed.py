"""Odd, broken and hostile headers: every upload ends accepted or in an AppError, never in another exception."""

from __future__ import annotations

import io
import random
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from app.errors import AppError, InvalidFileFormat, InvalidImage, InvalidRequest
from app.media.formats import sniff_content_type
from tests.conftest import corpus_bytes
from tests.unit.upload_pipeline import validate

# Small files of every format, with metadata, animation, alpha and orientation among them.
FUZZ_SAMPLES = (
    "hopper.jpg",
    "jpeg_camera_metadata_orientation_6.jpg",
    "sugarshack.mpo",
    "png_text_exif_time_icc_orientation_6.png",
    "apng_mode_16bit.png",
    "gif_animated_comment_xmp.gif",
    "webp_animated_5_frames_alpha.webp",
    "webp_exif_gps_xmp_icc_orientation_6.webp",
    "avif_exif_gps_xmp_orientation_6.avif",
    "avif_animated_4_frames.avif",
    "heic_exif_gps_xmp_orientation_6.heic",
)


def make_image(image_format: str, size: tuple[int, int] = (40, 30), mode: str = "RGB", **save_options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "orange" if mode == "RGB" else 128).save(buffer, image_format, **save_options)
    return buffer.getvalue()


def png_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + chunk_type + payload + struct.pack(">I", zlib.crc32(chunk_type + payload))


def outcome(data: bytes, *, strip: bool = True) -> str:
    """The error code, or "accepted"; any other exception fails the test that asks."""
    try:
        validate(data, strip=strip)
    except AppError as error:
        return error.code
    return "accepted"


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
def test_the_size_of_generated_images_is_read_from_their_headers(
    size: tuple[int, int], image_format: str, mode: str, options: dict[str, Any]
) -> None:
    prepared = validate(make_image(image_format, size, mode, **options))

    assert (prepared.width, prepared.height) == size


def test_junk_and_fill_bytes_between_jpeg_segments_are_read_past_and_not_stored() -> None:
    jpeg = make_image("JPEG", (33, 44))
    after_jfif = 4 + struct.unpack(">H", jpeg[4:6])[0]
    # Junk bytes that are not a marker, a stuffed FF 00, then fill bytes before the next marker.
    padded = jpeg[:after_jfif] + b"junk\xff\x00more" + b"\xff" * 20 + jpeg[after_jfif:]

    prepared = validate(padded)

    assert (prepared.width, prepared.height) == (33, 44)
    assert b"junk" not in prepared.data


@pytest.mark.filterwarnings("error")
def test_a_pillow_warning_on_a_decodable_png_does_not_reject_it() -> None:
    # An acTL chunk announcing zero frames makes Pillow warn "Invalid APNG" and fall back to the
    # still image, which decodes fine; under warnings-as-errors that warning would become a 400.
    png = make_image("PNG")
    with_bad_actl = png[:33] + png_chunk(b"acTL", struct.pack(">II", 0, 0)) + png[33:]

    prepared = validate(with_bad_actl)

    assert (prepared.content_type, prepared.width, prepared.height) == ("image/png", 40, 30)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "GIF", "WEBP", "AVIF"])
def test_a_file_cut_anywhere_is_refused(image_format: str) -> None:
    data = make_image(image_format, (20, 10), quality=90) if image_format != "PNG" else make_image("PNG", (20, 10))

    for cut in range(len(data)):
        truncated = data[:cut]
        if image_format == "GIF" and cut == len(data) - 1:
            # Only the trailer is missing: every frame is whole, and the stored file gets its trailer back.
            assert outcome(truncated) == "accepted"
            continue
        if cut == 0:
            expected = InvalidRequest.code
        elif sniff_content_type(truncated) is None:
            expected = InvalidFileFormat.code
        else:
            expected = InvalidImage.code
        assert outcome(truncated) == expected, cut


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff" + b"\xff" * 100_000,  # fill bytes forever, no marker
        b"\xff\xd8\xff\xe0\x00\x00",  # a segment length below its own two bytes
        b"\xff\xd8\xff\xe0\x00\x01",
        b"\xff\xd8\xff\xe0\xff\xff",  # a segment that runs past the end of the file
        b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\xff\xc0\x00\x0b\x08\x00\x10\x00\x10",  # SOF after SOS
        b"\xff\xd8\xff\xd9\xff\xc0\x00\x0b\x08\x00\x10\x00\x10",  # SOF after EOI
        b"\xff\xd8\xff\xc0\x00\x0b\x08\x00\x00\x00\x10\x01\x01\x11\x00",  # height 0 (deferred to DNL)
        b"\xff\xd8\xff\xc0\x00\x05\x08\x00\x10\x00\x10",  # SOF shorter than its own fields
        b"\xff\xd8" + b"\xff\xfe\x00\x02" * 20_000 + b"\xff\xc0\x00\x0b\x08\x00\x10\x00\x10",  # too many segments
        b"\xff\xd8\xff" + b"\x00" * 200_000,
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDX\x00\x00\x00\x10\x00\x00\x00\x10",  # first chunk is not IHDR
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x00\x00\x00\x00\x10",  # width 0
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 9, 0, 0, 0)),  # colour type 9
        b"GIF89a\x00\x00\x00\x00\x00\x00\x00;",  # a 0x0 screen and no frame
        b"GIF89a\x10\x00\x10\x00\xf7\x00\x00",  # a colour table that is not there
        b"RIFF\x04\x00\x00\x00WEBP",
        b"RIFF\xff\xff\xff\xffWEBPVP8X\x0a\x00\x00\x00\x02" + bytes(9),  # animated, 1x1, no frames
        b"\x00\x00\x00\x14ftypavif\x00\x00\x00\x00mif1",  # ftyp and nothing else
        b"\x00\x00\x00\x14ftypheic\x00\x00\x00\x00mif1" + b"\x00\x00\x00\x08meta",
    ],
    ids=lambda data: f"{len(data)}-bytes-{data[:16]!r}",
)
def test_a_broken_header_is_refused(data: bytes) -> None:
    assert outcome(data) in (InvalidImage.code, InvalidFileFormat.code)
    assert outcome(data, strip=False) in (InvalidImage.code, InvalidFileFormat.code)


@pytest.mark.parametrize("name", FUZZ_SAMPLES)
def test_random_damage_ends_accepted_or_in_an_app_error(name: str) -> None:
    # Decoders conceal some damage (see the corpus README), so acceptance is a valid outcome too.
    original = corpus_bytes(name)
    rng = random.Random(name)
    for attempt in range(150):
        data = bytearray(original)
        if attempt % 3 == 0:
            del data[rng.randrange(len(data)) :]
        for _ in range(rng.randrange(1, 5)):
            # Mostly in the headers, where the parsers are, sometimes anywhere.
            at = rng.randrange(min(len(data), 600) if rng.random() < 0.7 else len(data))
            data[at : at + 4] = rng.randbytes(rng.randrange(1, 5))
        assert outcome(bytes(data), strip=attempt % 2 == 0) in {
            "accepted",
            InvalidImage.code,
            InvalidFileFormat.code,
            "IMAGE_DIMENSIONS_EXCEEDED",
            "ANIMATION_TOO_LARGE",
        }


@pytest.mark.parametrize("prefix", [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\xff\0\0\0WEBPVP8X"])
def test_random_bytes_behind_a_signature_are_refused(prefix: bytes) -> None:
    rng = random.Random(prefix)
    for _ in range(150):
        garbage = prefix + rng.randbytes(rng.randrange(0, 2_000))
        assert outcome(garbage) in (InvalidImage.code, "IMAGE_DIMENSIONS_EXCEEDED", "ANIMATION_TOO_LARGE")
