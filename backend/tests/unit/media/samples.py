"""Image files for the media tests, made here: Pillow encodes the pixels, byte builders add metadata.

Every piece of metadata carries a distinctive string (`LEAKS`), so a test can say "none of it is
left" by searching the stripped bytes, on top of asking Pillow what it still reports.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Iterable
from typing import Any

from PIL import Image, ImageCms, ImageSequence

from app.media.codecs import register_codecs

# HEIC is read and written by pillow-heif's plugin (Pillow handles AVIF and WebP itself), registered
# with the options the application uses, so tests in the same process all see the same plugin.
register_codecs()

MAKE = b"Canon"
MODEL = b"EOS SecretModel"
DATE_TIME_ORIGINAL = b"2019:07:04 12:34:56"
# GPS latitude 51 deg 30' 12.34" N as three RATIONALs; the byte pattern is what would leak.
GPS_LATITUDE = ((51, 1), (30, 1), (1234, 100))
XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="SecretPerson"/></rdf:RDF></x:xmpmeta>'
    b'<?xpacket end="w"?>'
)
COMMENT = b"SecretComment: shot at home"
IPTC_CAPTION = b"SecretCaption of the IPTC record"
THUMBNAIL_MARKER = b"SecretThumbnail"
# What must be gone after stripping, whichever format carried it.
LEAKS = (
    MAKE,
    MODEL,
    DATE_TIME_ORIGINAL,
    b"SecretPerson",
    b"xmpmeta",
    b"SecretComment",
    b"SecretCaption",
    b"SecretThumb",
)


def photo(size: tuple[int, int] = (48, 32), mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A deterministic picture with gradients and grain, so encoders have real work to do."""
    width, height = size
    gradient = Image.linear_gradient("L").resize(size)
    grain = random.Random(seed).randbytes(width * height)
    noise = Image.blend(Image.frombytes("L", size, grain), gradient, 0.6)
    red = Image.blend(gradient, noise, 0.3)
    green = gradient.transpose(Image.Transpose.ROTATE_90).resize(size)
    blue = Image.blend(noise, Image.new("L", size, (seed * 37) % 256), 0.5)
    image = Image.merge("RGB", (red, green, blue))
    if mode == "RGBA":
        alpha = gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image.putalpha(alpha)
    elif mode != "RGB":
        image = image.convert(mode)
    return image


def encode(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def encode_frames(frames: list[Image.Image], image_format: str, **options: Any) -> bytes:
    return encode(frames[0], image_format, save_all=True, append_images=frames[1:], **options)


def srgb_profile() -> bytes:
    profile: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return profile


# --- what a decoder makes of a file ---


def decoded_frames(data: bytes) -> list[tuple[str, tuple[int, int], bytes]]:
    """Mode, size and pixels of every frame, as Pillow decodes them."""
    with Image.open(io.BytesIO(data)) as image:
        return [(frame.mode, frame.size, frame.tobytes()) for frame in ImageSequence.Iterator(image)]


def shown_orientation(data: bytes) -> int:
    """The EXIF orientation Pillow would apply (1 when there is none)."""
    with Image.open(io.BytesIO(data)) as image:
        orientation: int = image.getexif().get(0x0112, 1)
        return orientation


def info(data: bytes) -> dict[str, Any]:
    with Image.open(io.BytesIO(data)) as image:
        return dict(image.info)


def exif_tags(data: bytes) -> dict[int, Any]:
    """IFD0, Exif IFD and GPS IFD tags together, as Pillow reports them."""
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        return {**exif, **exif.get_ifd(0x8769), **{0x10000 + tag: value for tag, value in exif.get_ifd(0x8825).items()}}


def leaks(data: bytes) -> list[bytes]:
    return [marker for marker in LEAKS if marker in data]


# --- EXIF (a TIFF structure) ---

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1}
Entry = tuple[int, int, bytes]  # tag, TIFF type, value bytes


def exif_tiff(
    *,
    orientation: int | None = None,
    camera: bool = True,
    gps: bool = True,
    thumbnail: bytes | None = None,
    byte_order: str = "MM",
) -> bytes:
    """An EXIF block as cameras write it: Make/Model, orientation, DateTimeOriginal, GPS, a thumbnail (IFD1)."""
    order = "<" if byte_order == "II" else ">"
    ifd0: list[Entry] = []
    if camera:
        ifd0 += [(0x010F, 2, MAKE + b"\0"), (0x0110, 2, MODEL + b"\0")]
    if orientation is not None:
        ifd0.append((0x0112, 3, struct.pack(order + "H", orientation)))
    exif_ifd: list[Entry] = [(0x9003, 2, DATE_TIME_ORIGINAL + b"\0")] if camera else []
    rationals = b"".join(struct.pack(order + "II", *pair) for pair in GPS_LATITUDE)
    gps_ifd: list[Entry] = [(1, 2, b"N\0"), (2, 5, rationals)] if gps else []
    # Pointers to the sub-IFDs: their values are known only once everything is laid out.
    if exif_ifd:
        ifd0.append((0x8769, 4, b"\0" * 4))
    if gps_ifd:
        ifd0.append((0x8825, 4, b"\0" * 4))
    ifd1: list[Entry] = []
    if thumbnail is not None:
        ifd1 = [(0x0201, 4, b"\0" * 4), (0x0202, 4, struct.pack(order + "I", len(thumbnail)))]
    offsets = {}
    position = 8
    for name, entries in (("ifd0", ifd0), ("exif", exif_ifd), ("gps", gps_ifd), ("ifd1", ifd1)):
        offsets[name] = position
        position += _ifd_size(entries) if entries else 0
    offsets["thumbnail"] = position

    def resolved(entries: list[Entry]) -> list[Entry]:
        pointers = {0x8769: "exif", 0x8825: "gps", 0x0201: "thumbnail"}
        return [
            (tag, kind, struct.pack(order + "I", offsets[pointers[tag]]) if tag in pointers else value)
            for tag, kind, value in entries
        ]

    next_ifd = offsets["ifd1"] if ifd1 else 0
    header = (b"II*\0" if order == "<" else b"MM\0*") + struct.pack(order + "I", 8)
    parts = [header, _ifd(resolved(ifd0), offsets["ifd0"], next_ifd, order)]
    for name, entries in (("exif", exif_ifd), ("gps", gps_ifd), ("ifd1", ifd1)):
        if entries:
            parts.append(_ifd(resolved(entries), offsets[name], 0, order))
    parts.append(thumbnail or b"")
    return b"".join(parts)


def _ifd_size(entries: list[Entry]) -> int:
    return 2 + 12 * len(entries) + 4 + sum(len(value) + len(value) % 2 for _, _, value in entries if len(value) > 4)


def _ifd(entries: list[Entry], at: int, next_ifd: int, order: str) -> bytes:
    entries = sorted(entries)
    data_at = at + 2 + 12 * len(entries) + 4
    table, data = [struct.pack(order + "H", len(entries))], []
    for tag, kind, value in entries:
        count = len(value) // _TYPE_SIZES[kind]
        if len(value) <= 4:
            table.append(struct.pack(order + "HHI", tag, kind, count) + value.ljust(4, b"\0"))
        else:
            table.append(struct.pack(order + "HHII", tag, kind, count, data_at))
            padded = value + b"\0" * (len(value) % 2)
            data.append(padded)
            data_at += len(padded)
    table.append(struct.pack(order + "I", next_ifd))
    return b"".join(table + data)


def exif_thumbnail() -> bytes:
    """A small JPEG to embed in EXIF IFD1, with a COM segment that gives it away."""
    return encode(photo((16, 12)), "JPEG", comment=THUMBNAIL_MARKER)


# --- JPEG segments ---


def segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def exif_segment(tiff: bytes) -> bytes:
    return segment(0xE1, b"Exif\0\0" + tiff)


def xmp_segment() -> bytes:
    return segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0" + XMP)


def iptc_segment() -> bytes:
    """APP13 Photoshop image resources with an IPTC-NAA record (8BIM 0x0404) holding a caption."""
    record = b"\x1c\x02\x78" + struct.pack(">H", len(IPTC_CAPTION)) + IPTC_CAPTION
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\0\0" + struct.pack(">I", len(record)) + record
    return segment(0xED, b"Photoshop 3.0\0" + resource + b"\0" * (len(record) % 2))


def icc_segments(profile: bytes, chunk_size: int = 60_000) -> list[bytes]:
    chunks = [profile[start : start + chunk_size] for start in range(0, len(profile), chunk_size)]
    return [
        segment(0xE2, b"ICC_PROFILE\0" + bytes([index + 1, len(chunks)]) + chunk) for index, chunk in enumerate(chunks)
    ]


def jfif_segment(*, thumbnail_size: tuple[int, int] = (0, 0), density: tuple[int, int] = (72, 72)) -> bytes:
    width, height = thumbnail_size
    thumbnail = (THUMBNAIL_MARKER * (1 + 3 * width * height // len(THUMBNAIL_MARKER)))[: 3 * width * height]
    return segment(0xE0, b"JFIF\0\x01\x02\x01" + struct.pack(">HH", *density) + bytes([width, height]) + thumbnail)


def with_jfif(jpeg: bytes, jfif: bytes) -> bytes:
    """The JPEG with its leading JFIF APP0 (Pillow writes one) replaced by `jfif`."""
    assert jpeg[2:4] == b"\xff\xe0"
    return jpeg[:2] + jfif + jpeg[4 + struct.unpack(">H", jpeg[4:6])[0] :]


def with_segments(jpeg: bytes, segments: Iterable[bytes]) -> bytes:
    """The JPEG with `segments` inserted right after SOI (and after Pillow's JFIF APP0, if any)."""
    insert_at = 2
    if jpeg[2:4] == b"\xff\xe0":
        insert_at = 4 + struct.unpack(">H", jpeg[4:6])[0]
    return jpeg[:insert_at] + b"".join(segments) + jpeg[insert_at:]


def jpeg_segment_markers(jpeg: bytes) -> list[int]:
    """The markers before the first scan, read simply (for files made here, without junk)."""
    markers, position = [], 2
    while jpeg[position + 1] != 0xDA:
        markers.append(jpeg[position + 1])
        position += 2 + struct.unpack(">H", jpeg[position + 2 : position + 4])[0]
    return markers


# --- PNG chunks ---


def png_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(chunk_type + payload)
    return struct.pack(">I", len(payload)) + chunk_type + payload + struct.pack(">I", crc)


def with_png_chunks(png: bytes, chunks: Iterable[bytes], *, before: bytes = b"IDAT") -> bytes:
    at = png.index(before) - 4
    return png[:at] + b"".join(chunks) + png[at:]


def png_chunk_types(png: bytes) -> list[bytes]:
    types, position = [], 8
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        types.append(png[position + 4 : position + 8])
        position += 12 + length
    return types


# --- GIF blocks ---


def gif_sub_blocks(payload: bytes) -> bytes:
    blocks = [payload[start : start + 255] for start in range(0, len(payload), 255)]
    return b"".join(bytes([len(block)]) + block for block in blocks) + b"\0"


def gif_extension(label: int, payload: bytes) -> bytes:
    return b"!" + bytes([label]) + gif_sub_blocks(payload)


def gif_plain_text(text: bytes) -> bytes:
    """A plain text extension: a 12-byte grid description, then the text."""
    grid = struct.pack("<HHHHBBBB", 0, 0, 8 * len(text), 8, 8, 8, 1, 0)
    return b"!\x01" + bytes([len(grid)]) + grid + gif_sub_blocks(text)


def gif_application(identifier: bytes, payload: bytes) -> bytes:
    return b"!\xff" + bytes([len(identifier)]) + identifier + gif_sub_blocks(payload)


def gif_blocks_start(gif: bytes) -> int:
    flags = gif[10]
    return 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)


def with_gif_blocks(gif: bytes, blocks: Iterable[bytes]) -> bytes:
    at = gif_blocks_start(gif)
    return gif[:at] + b"".join(blocks) + gif[at:]


# --- WebP chunks ---


def riff_chunk(fourcc: bytes, payload: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) % 2)


def with_webp_chunks(webp: bytes, chunks: Iterable[bytes]) -> bytes:
    body = webp[12:] + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def webp_chunk_types(webp: bytes) -> list[bytes]:
    types, position = [], 12
    while position < len(webp):
        (size,) = struct.unpack("<I", webp[position + 4 : position + 8])
        types.append(webp[position : position + 4])
        position += 8 + size + size % 2
    return types
