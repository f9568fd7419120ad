"""The images the benchmark sends: photo-like pixels (smooth colour fields plus grain), fixed seeds.

Photo-like rather than pure noise, so a file of a given size has the pixel count a camera's would and
validation and thumbnails cost what they cost on real uploads. The 4000x3000 source is the very file
`thumbnail_floor.py` measures, so scenario 4 and its floor decode the same bytes.

The upload scenarios send what phones and web pages send: a JPEG with the metadata a phone writes
(EXIF with Make/Model, DateTimeOriginal and GPS, an XMP packet, an ICC profile), a lossy WebP of a
typical web size and a phone-sized HEIC, each with an ICC profile. The profile is what makes every
request new content: stripping keeps it (it decides the colours), so rewriting its header's date and
time field gives bytes that are still new after stripping and cost exactly as much to decode.
"""

from __future__ import annotations

import io
import itertools
import random
import struct
import time
from collections.abc import Callable
from functools import cache

from PIL import ExifTags, Image, ImageCms

import thumbnail_floor

ASPECT = 4 / 3
QUALITY = 90
GRAIN = 0.08
# The ICC header's creation date and time: six big-endian 16-bit numbers (year, month, day, hour,
# minute, second) at bytes 24-35. Nothing that decodes or displays an image reads them.
ICC_DATE_OFFSET = 24
ICC_DATE_SIZE = 12
# The profile ID (an MD5 of the profile) at bytes 84-99; all zero means "not computed", which keeps a
# profile whose date is rewritten honest.
_ICC_PROFILE_ID = slice(84, 100)
# The date of every bench image's profile as made here; the stamps of wrk.py count on from it, those
# of the Python clients (variants checked before a scenario, thumbnails, big uploads) count back.
FIRST_STAMP_SECOND = 946_684_800  # 2000-01-01 00:00:00 UTC
UPLOAD_JPEG_BYTES = 200_000
WEBP_SIZE = (1600, 1200)
WEBP_QUALITY = 80
HEIC_SIZE = (4032, 3024)  # a 12 MP phone camera's
# x265's fastest preset: the encode takes seconds instead of half a minute, and a phone's hardware
# encoder spends no more effort either. At quality 55 the file is ~2.8 MB, an iPhone photo's size.
HEIC_QUALITY = 55
HEIC_PRESET = "ultrafast"

SaveOptions = Callable[[int, int], dict[str, bytes]]


def upload_jpeg() -> bytes:
    """The body of the JPEG upload scenarios: ~200 KB with a phone's metadata (EXIF with GPS, XMP, ICC)."""
    return jpeg_near(UPLOAD_JPEG_BYTES, seed=200, metadata=phone_metadata_options)


def upload_webp() -> bytes:
    """The body of the WebP upload scenario: a lossy 1600x1200 photo (~230 KB) with EXIF, XMP and ICC."""
    return photo_like_webp(*WEBP_SIZE, seed=300)


def upload_heic() -> bytes:
    """The body of the HEIC upload scenario: a 4032x3024 phone photo (~2.8 MB) with EXIF, XMP and ICC."""
    return photo_like_heic(*HEIC_SIZE, seed=4032)


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """Pixels that code like a photo (the generator of thumbnail_floor.py, any size)."""
    rng = random.Random(seed)
    blobs = Image.frombytes("RGB", (40, 30), rng.randbytes(40 * 30 * 3)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    grain = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    return Image.blend(blobs, grain, GRAIN)


def photo_like_jpeg(width: int, height: int, seed: int, *, metadata: SaveOptions | None = None) -> bytes:
    """A JPEG of `width`x`height` that codes like a photo, with the metadata `metadata` gives, if any."""
    buffer = io.BytesIO()
    extra = metadata(width, height) if metadata else {}
    photo_like(width, height, seed).save(buffer, "JPEG", quality=QUALITY, **extra)
    return buffer.getvalue()


def jpeg_near(
    target_bytes: int, seed: int, *, at_most: int | None = None, metadata: SaveOptions | None = None
) -> bytes:
    """A 4:3 photo-like JPEG within ~3% of `target_bytes` (and never above `at_most`)."""
    # Bytes grow about linearly with the pixel count at a fixed quality and grain: a few rescalings
    # of the area converge quickly.
    width = 800
    data = b""
    for _ in range(6):
        height = max(16, round(width / ASPECT))
        data = photo_like_jpeg(width, height, seed, metadata=metadata)
        ratio = target_bytes / len(data)
        too_big = at_most is not None and len(data) > at_most
        if abs(ratio - 1) < 0.03 and not too_big:
            break
        width = max(16, round(width * ratio**0.5 * (0.99 if at_most else 1)))
    if at_most is not None and len(data) > at_most:
        raise RuntimeError(f"could not make a JPEG of at most {at_most} bytes (got {len(data)})")
    return data


def photo_like_webp(width: int, height: int, seed: int) -> bytes:
    """A lossy WebP as a web page serves one, with EXIF, XMP and an ICC profile."""
    buffer = io.BytesIO()
    options = phone_metadata_options(width, height)
    photo_like(width, height, seed).save(buffer, "WEBP", quality=WEBP_QUALITY, method=4, **options)
    return buffer.getvalue()


def photo_like_heic(width: int, height: int, seed: int) -> bytes:
    """A HEIC as a phone writes one (4:2:0), with EXIF, XMP and an ICC profile."""
    from pillow_heif import register_heif_opener

    register_heif_opener()
    buffer = io.BytesIO()
    photo_like(width, height, seed).save(
        buffer,
        "HEIF",
        quality=HEIC_QUALITY,
        chroma=420,
        enc_params={"preset": HEIC_PRESET},
        **phone_metadata_options(width, height),
    )
    return buffer.getvalue()


def thumbnail_source_jpeg() -> bytes:
    """The 4000x3000 q90 JPEG of thumbnail_floor.py (about 2.8 MB), with the ICC profile added.

    The profile lets each upload of scenario 4 be new content (`stamped`); it does not change what
    decoding costs, so the floor decodes these very bytes all the same.
    """
    return with_icc_profile(thumbnail_floor.make_photo_like_jpeg())


# --- what a phone writes ------------------------------------------------------------------------


@cache
def icc_profile() -> bytes:
    """An sRGB ICC profile (as littleCMS writes it) dated FIRST_STAMP_SECOND, its profile ID unset."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[ICC_DATE_OFFSET : ICC_DATE_OFFSET + ICC_DATE_SIZE] = icc_stamp(FIRST_STAMP_SECOND)
    profile[_ICC_PROFILE_ID] = bytes(16)
    return bytes(profile)


def icc_stamp(second: int) -> bytes:
    """The ICC date and time field for `second` (UTC); the Lua of wrk.py writes the same bytes."""
    moment = time.gmtime(second)
    return struct.pack(
        ">6H", moment.tm_year, moment.tm_mon, moment.tm_mday, moment.tm_hour, moment.tm_min, moment.tm_sec
    )


def icc_date_offset(data: bytes) -> int:
    """Where the ICC profile's date and time field is in an image file made here."""
    profile = icc_profile()
    start = data.find(profile)
    if start < 0 or data.find(profile, start + 1) >= 0:
        raise ValueError("the file does not hold the bench ICC profile exactly once")
    return start + ICC_DATE_OFFSET


def stamped(data: bytes, second: int) -> bytes:
    """`data` with its ICC profile dated `second`: new content that decodes to the same pixels."""
    offset = icc_date_offset(data)
    return data[:offset] + icc_stamp(second) + data[offset + ICC_DATE_SIZE :]


# The stamps of this process's own uploads, counting back from the profile's date (wrk's count on).
_earlier_seconds = itertools.count(FIRST_STAMP_SECOND - 1, -1)


def fresh(data: bytes) -> bytes:
    """`data` stamped with a date no other body of this run carries: content the server has not seen."""
    return stamped(data, next(_earlier_seconds))


def with_icc_profile(jpeg: bytes) -> bytes:
    """A JPEG with the bench ICC profile inserted as an APP2 segment, after its JFIF segment if any."""
    if not jpeg.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG")
    at = 2
    if jpeg[2:4] == b"\xff\xe0":  # JFIF's APP0 comes first
        at += 2 + struct.unpack(">H", jpeg[4:6])[0]
    payload = b"ICC_PROFILE\x00\x01\x01" + icc_profile()  # chunk 1 of 1
    return jpeg[:at] + b"\xff\xe2" + struct.pack(">H", len(payload) + 2) + payload + jpeg[at:]


def icc_only_options(width: int, height: int) -> dict[str, bytes]:
    """Pillow save options for the ICC profile alone: stripping leaves such a file as it is."""
    return {"icc_profile": icc_profile()}


def phone_metadata_options(width: int, height: int) -> dict[str, bytes]:
    """Pillow save options for EXIF (camera, time, GPS, maker note), XMP and the ICC profile."""
    return {"exif": phone_exif(width, height), "xmp": phone_xmp(), "icc_profile": icc_profile()}


def phone_exif(width: int, height: int) -> bytes:
    """EXIF as a phone camera writes it: who made it, when, with what settings, and where."""
    tags = ExifTags.Base
    exif = Image.Exif()
    exif[tags.Make] = "Google"
    exif[tags.Model] = "Pixel 8"
    exif[tags.Orientation] = 1
    exif[tags.Software] = "HDR+ 1.0.641377693zd"
    exif[tags.DateTime] = "2024:06:01 12:34:56"
    exif[tags.XResolution] = 72.0
    exif[tags.YResolution] = 72.0
    exif[tags.ResolutionUnit] = 2
    camera = exif.get_ifd(ExifTags.IFD.Exif)
    camera[tags.DateTimeOriginal] = "2024:06:01 12:34:56"
    camera[tags.DateTimeDigitized] = "2024:06:01 12:34:56"
    camera[tags.OffsetTimeOriginal] = "+02:00"
    camera[tags.SubsecTimeOriginal] = "482"
    camera[tags.ExposureTime] = 1 / 120
    camera[tags.FNumber] = 1.68
    camera[tags.ISOSpeedRatings] = 49
    camera[tags.FocalLength] = 6.9
    camera[tags.FocalLengthIn35mmFilm] = 25
    camera[tags.LensMake] = "Google"
    camera[tags.LensModel] = "Pixel 8 back camera 6.9mm f/1.68"
    camera[tags.ExifImageWidth] = width
    camera[tags.ExifImageHeight] = height
    # Phones' maker notes run to kilobytes of opaque data.
    camera[tags.MakerNote] = random.Random(8).randbytes(3000)
    gps_tags = ExifTags.GPS
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[gps_tags.GPSVersionID] = b"\x02\x02\x00\x00"
    gps[gps_tags.GPSLatitudeRef] = "N"
    gps[gps_tags.GPSLatitude] = (48.0, 51.0, 29.64)
    gps[gps_tags.GPSLongitudeRef] = "E"
    gps[gps_tags.GPSLongitude] = (2.0, 17.0, 40.2)
    gps[gps_tags.GPSAltitudeRef] = b"\x00"
    gps[gps_tags.GPSAltitude] = 35.4
    gps[gps_tags.GPSTimeStamp] = (10.0, 34.0, 56.0)
    gps[gps_tags.GPSDateStamp] = "2024:06:01"
    return exif.tobytes()


def phone_xmp() -> bytes:
    """An XMP packet like a phone's: dates, camera, location and the padding writers leave for edits."""
    packet = f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 5.1.0-jc003">
  <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
    <rdf:Description rdf:about=""
        xmlns:xmp="http://ns.adobe.com/xap/1.0/"
        xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
        xmlns:exif="http://ns.adobe.com/exif/1.0/"
        xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
        xmlns:GCamera="http://ns.google.com/photos/1.0/camera/"
        xmp:CreateDate="2024-06-01T12:34:56.482+02:00"
        xmp:ModifyDate="2024-06-01T12:34:56.482+02:00"
        xmp:CreatorTool="Pixel 8"
        photoshop:DateCreated="2024-06-01T12:34:56.482+02:00"
        tiff:Make="Google"
        tiff:Model="Pixel 8"
        exif:GPSLatitude="48,51.494N"
        exif:GPSLongitude="2,17.670E"
        exif:GPSAltitude="354/10"
        GCamera:MicroVideo="0"
        GCamera:SpecialTypeID="com.google.android.apps.camera.gallery.specialtype.SpecialType-NONE"/>
  </rdf:RDF>
</x:xmpmeta>
{" " * 2000}
<?xpacket end="w"?>"""
    return packet.encode()
