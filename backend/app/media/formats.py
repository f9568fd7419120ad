"""The image formats Chitram accepts, told apart by their leading bytes, never by a name or a claim.

Content types are the currency of the rest of the code (they are stored with each image); this
module maps each to its file extension and to the Pillow plugins allowed to open it, and decides
which one a file's first bytes prove.
"""

from __future__ import annotations

import struct
from typing import Final

JPEG: Final = "image/jpeg"
PNG: Final = "image/png"
GIF: Final = "image/gif"
WEBP: Final = "image/webp"
AVIF: Final = "image/avif"
HEIC: Final = "image/heic"
HEIF: Final = "image/heif"

# Every type the service can accept; ALLOWED_CONTENT_TYPES may narrow it.
ALL_CONTENT_TYPES: Final = (JPEG, PNG, WEBP, GIF, AVIF, HEIC, HEIF)

EXTENSIONS: Final[dict[str, str]] = {
    JPEG: ".jpg",
    PNG: ".png",
    GIF: ".gif",
    WEBP: ".webp",
    AVIF: ".avif",
    HEIC: ".heic",
    HEIF: ".heif",
}

# What people call each format, for messages and the upload page.
LABELS: Final[dict[str, str]] = {
    JPEG: "JPEG",
    PNG: "PNG",
    GIF: "GIF",
    WEBP: "WebP",
    AVIF: "AVIF",
    HEIC: "HEIC",
    HEIF: "HEIF",
}

# What every current browser displays itself; HEIC and HEIF only Safari does, so pages show those
# through their thumbnail (ADR 0012).
BROWSER_NATIVE: Final = frozenset({JPEG, PNG, GIF, WEBP, AVIF})

# Restricting Image.open to the sniffed format keeps every other Pillow plugin away from hostile
# input. MPO files are opened by the JPEG plugin (it returns an MpoImageFile), so "JPEG" covers them;
# "HEIF" is pillow-heif's plugin (app.media.codecs registers it).
PILLOW_FORMATS: Final[dict[str, tuple[str, ...]]] = {
    JPEG: ("JPEG",),
    PNG: ("PNG",),
    GIF: ("GIF",),
    WEBP: ("WEBP",),
    AVIF: ("AVIF",),
    HEIC: ("HEIF",),
    HEIF: ("HEIF",),
}

# ISO base media files (AVIF, HEIC, HEIF) name their kind in the `ftyp` box's brands.
ISOBMFF_TYPES: Final = frozenset({AVIF, HEIC, HEIF})
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
_HEIC_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_HEIF_BRANDS: Final = frozenset({b"mif1", b"msf1"})

_JPEG_SIGNATURE: Final = b"\xff\xd8\xff"
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_GIF_SIGNATURES: Final = (b"GIF87a", b"GIF89a")
# How many leading bytes `sniff_content_type` needs to see: an `ftyp` box lists its brands there.
SNIFF_BYTES: Final = 256


def sniff_content_type(head: bytes) -> str | None:
    """Return the content type that the leading magic bytes prove, or None."""
    if head.startswith(_JPEG_SIGNATURE):
        return JPEG
    if head.startswith(_PNG_SIGNATURE):
        return PNG
    if head.startswith(_GIF_SIGNATURES):
        return GIF
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    return _isobmff_type(head)


def _isobmff_type(head: bytes) -> str | None:
    """AVIF, HEIC or HEIF from the `ftyp` box's major and compatible brands; None for anything else."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    (box_size,) = struct.unpack(">I", head[:4])
    if box_size < 16 or box_size % 4:
        return None
    major = head[8:12]
    # Brands follow the minor version; a box longer than what was read is judged on what was read.
    compatible = {head[offset : offset + 4] for offset in range(16, min(box_size, len(head)) - 3, 4)}
    brands = {major, *compatible}
    # The major brand says what the file mainly is: an AVIF may list mif1, a HEIC may list miaf.
    for candidates, content_type in ((_AVIF_BRANDS, AVIF), (_HEIC_BRANDS, HEIC)):
        if major in candidates:
            return content_type
    if brands & _AVIF_BRANDS:
        return AVIF
    if brands & _HEIC_BRANDS:
        return HEIC
    if brands & _HEIF_BRANDS:
        return HEIF
    return None


# Declared types that clients send for our formats. Old IE sent image/pjpeg and image/x-png, and
# image/jpg is a common typo that browsers and libraries still produce. A declared HEIF covers a
# HEIC (HEIC is HEIF with HEVC inside), and the -sequence types name the animated forms.
_DECLARED_FAMILIES: Final[dict[str, str]] = {
    "image/jpg": JPEG,
    "image/pjpeg": JPEG,
    "image/x-png": PNG,
    "image/apng": PNG,
    "image/x-webp": WEBP,
    "image/avif-sequence": AVIF,
    "image/heif": HEIF,
    "image/heic": HEIF,
    "image/heif-sequence": HEIF,
    "image/heic-sequence": HEIF,
}


def family(content_type: str) -> str:
    """The type a declared content type names, with aliases folded (image/jpg -> image/jpeg; HEIC -> HEIF)."""
    folded = _DECLARED_FAMILIES.get(content_type, content_type)
    return HEIF if folded == HEIC else folded
