"""HEIF files (AVIF) assembled box by box, so a test can choose every version, size form and layout.

Pillow encodes the picture; `coded_image` lifts its coded bytes and properties out of the file, and
`assemble` builds a new file around them with the metadata items, table versions and box layout
asked for. Decoding the assembled file proves the builder right before a test strips it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import Image

from tests.unit.media import samples

XMP_UUID = bytes.fromhex("be7acfcb97a942e89c71999491e3afac")
PRIMARY, EXIF_ITEM, XMP_ITEM, THUMBNAIL = 1, 2, 3, 4


def box(box_type: bytes, payload: bytes, *, large: bool = False) -> bytes:
    if large:
        return struct.pack(">I4sQ", 1, box_type, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), box_type) + payload


def full_box(box_type: bytes, version: int, flags: int, payload: bytes, *, large: bool = False) -> bytes:
    return box(box_type, struct.pack(">I", version << 24 | flags) + payload, large=large)


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, end) of compact boxes, as Pillow writes them."""
    while start < end:
        size, box_type = struct.unpack(">I4s", data[start : start + 8])
        yield box_type, start + 8, start + size
        start += size


def _child(data: bytes, start: int, end: int, box_type: bytes) -> tuple[int, int]:
    return next((payload, child_end) for kind, payload, child_end in _boxes(data, start, end) if kind == box_type)


@dataclass(frozen=True)
class CodedImage:
    """One coded picture and its item properties (ipco children, in order; 1-based essential indices)."""

    data: bytes
    properties: tuple[bytes, ...]
    essential: frozenset[int]


def coded_image(image: Image.Image) -> CodedImage:
    """The coded picture of a metadata-free Pillow AVIF: its one item fills the mdat."""
    avif = samples.encode(image, "AVIF", quality=90)
    meta, meta_end = _child(avif, 0, len(avif), b"meta")
    iprp, iprp_end = _child(avif, meta + 4, meta_end, b"iprp")
    ipco, ipco_end = _child(avif, iprp, iprp_end, b"ipco")
    properties = tuple(avif[payload - 8 : end] for _, payload, end in _boxes(avif, ipco, ipco_end))
    ipma, _ = _child(avif, iprp, iprp_end, b"ipma")
    entry_count, item_id, association_count = struct.unpack(">IHB", avif[ipma + 4 : ipma + 11])
    assert (entry_count, item_id) == (1, PRIMARY)
    associations = avif[ipma + 11 : ipma + 11 + association_count]
    mdat, mdat_end = _child(avif, 0, len(avif), b"mdat")
    return CodedImage(avif[mdat:mdat_end], properties, frozenset(a & 0x7F for a in associations if a & 0x80))


@dataclass(frozen=True)
class Layout:
    """How `assemble` writes the file; each field exercises one branch of a reader."""

    iloc_version: int = 1
    metadata_in_idat: bool = False  # construction method 1 (needs iloc version 1 or 2)
    infe_version: int = 2
    iinf_version: int = 0
    iref_version: int = 0
    ipma_version: int = 0
    ipma_flags: int = 0
    large_sizes: bool = False  # 64-bit sizes for meta and mdat
    mdat_to_end: bool = False  # mdat with size 0, running to the end of the file
    xmp_uuid_box: bool = False  # Adobe's top-level uuid box holding XMP
    thumbnail: bool = False  # a second image item, referenced as the primary's thumbnail
    metadata_properties: bool = False  # the Exif item associated with a property too
    odd_reference: bool = False  # an unknown reference from the primary to the Exif item and the thumbnail
    extra_top_level: tuple[bytes, ...] = field(default=())


def assemble(image: CodedImage, exif: bytes, xmp: bytes, layout: Layout = Layout()) -> bytes:
    """An AVIF with the picture as item 1, an Exif item 2 and an XMP item 3 (and a thumbnail item 4)."""
    exif_payload = struct.pack(">I", 0) + exif
    in_mdat: dict[int, bytes] = {PRIMARY: image.data}
    in_idat: dict[int, bytes] = {}
    (in_idat if layout.metadata_in_idat else in_mdat).update({EXIF_ITEM: exif_payload, XMP_ITEM: xmp})
    if layout.thumbnail:
        in_mdat[THUMBNAIL] = image.data
    # Field sizes never change, so laying out twice with the true mdat offset gives the same sizes.
    meta = _meta(image, layout, in_mdat, in_idat, mdat_payload_at=0)
    ftyp = box(b"ftyp", b"avif\0\0\0\0avifmif1miaf")
    uuid = box(b"uuid", XMP_UUID + samples.XMP) if layout.xmp_uuid_box else b""
    before_mdat = ftyp + b"".join(layout.extra_top_level) + uuid
    mdat_header = 16 if layout.large_sizes else 8
    mdat_payload_at = len(before_mdat) + len(meta) + mdat_header
    meta = _meta(image, layout, in_mdat, in_idat, mdat_payload_at=mdat_payload_at)
    mdat_payload = b"".join(in_mdat.values())
    if layout.mdat_to_end:
        mdat = struct.pack(">I4s", 0, b"mdat") + mdat_payload
    else:
        mdat = box(b"mdat", mdat_payload, large=layout.large_sizes)
    return ftyp + b"".join(layout.extra_top_level) + uuid + meta + mdat


def _meta(
    image: CodedImage, layout: Layout, in_mdat: dict[int, bytes], in_idat: dict[int, bytes], mdat_payload_at: int
) -> bytes:
    item_ids = sorted({*in_mdat, *in_idat})
    id_format = ">H" if layout.iloc_version < 2 else ">I"
    # offset_size 4, length_size 4, base_offset_size 4, index_size 0.
    iloc = [struct.pack(">H", 0x4440), struct.pack(id_format, len(item_ids))]
    for method, items, base in ((0, in_mdat, mdat_payload_at), (1, in_idat, 0)):
        offset = 0
        for item_id, data in items.items():
            iloc.append(struct.pack(id_format, item_id))
            if layout.iloc_version > 0:
                iloc.append(struct.pack(">H", method))
            iloc.append(struct.pack(">HIHII", 0, base, 1, offset, len(data)))
            offset += len(data)
    types = {PRIMARY: b"av01", EXIF_ITEM: b"Exif", XMP_ITEM: b"mime", THUMBNAIL: b"av01"}
    infe_id = ">H" if layout.infe_version == 2 else ">I"
    entries = []
    for item_id in item_ids:
        tail = b"\0application/rdf+xml\0" if types[item_id] == b"mime" else b"\0"
        payload = struct.pack(infe_id, item_id) + b"\0\0" + types[item_id] + tail
        entries.append(full_box(b"infe", layout.infe_version, 0, payload))
    count = struct.pack(">H" if layout.iinf_version == 0 else ">I", len(entries))
    iinf = full_box(b"iinf", layout.iinf_version, 0, count + b"".join(entries))

    ref_id = ">H" if layout.iref_version == 0 else ">I"
    references = [(b"cdsc", EXIF_ITEM, [PRIMARY]), (b"cdsc", XMP_ITEM, [PRIMARY])]
    if layout.thumbnail:
        references.append((b"thmb", THUMBNAIL, [PRIMARY]))
    if layout.odd_reference:
        references.append((b"xtra", PRIMARY, [EXIF_ITEM, *([THUMBNAIL] if layout.thumbnail else [])]))
    iref_boxes = [
        box(
            kind,
            struct.pack(ref_id, source)
            + struct.pack(">H", len(targets))
            + b"".join(struct.pack(ref_id, t) for t in targets),
        )
        for kind, source, targets in references
    ]
    iref = full_box(b"iref", layout.iref_version, 0, b"".join(iref_boxes))

    association_format, essential_bit = (">H", 0x8000) if layout.ipma_flags & 1 else (">B", 0x80)
    ipma_id = ">H" if layout.ipma_version == 0 else ">I"
    image_properties = range(1, len(image.properties) + 1)
    associated = {item_id: image_properties for item_id in item_ids if types[item_id] == b"av01"}
    if layout.metadata_properties:
        associated[EXIF_ITEM] = range(1, 2)
    ipma_entries = [
        struct.pack(ipma_id, item_id)
        + bytes([len(indices)])
        + b"".join(struct.pack(association_format, i | (essential_bit if i in image.essential else 0)) for i in indices)
        for item_id, indices in sorted(associated.items())
    ]
    ipma = full_box(
        b"ipma", layout.ipma_version, layout.ipma_flags, struct.pack(">I", len(ipma_entries)) + b"".join(ipma_entries)
    )
    iprp = box(b"iprp", box(b"ipco", b"".join(image.properties)) + ipma)

    hdlr = full_box(b"hdlr", 0, 0, b"\0\0\0\0pict" + b"\0" * 12 + b"\0")
    pitm = full_box(b"pitm", 0, 0, struct.pack(">H", PRIMARY))
    iloc_box = full_box(b"iloc", layout.iloc_version, 0, b"".join(iloc))
    idat = box(b"idat", b"".join(in_idat.values())) if in_idat else b""
    return full_box(b"meta", 0, 0, hdlr + pitm + iloc_box + iinf + iref + iprp + idat, large=layout.large_sizes)


# One layout per branch of the readers, for tests to run over.
LAYOUTS = {
    "iloc-v0": Layout(iloc_version=0),
    "iloc-v1": Layout(iloc_version=1),
    "iloc-v2-idat": Layout(iloc_version=2, metadata_in_idat=True),
    "iloc-v1-idat": Layout(iloc_version=1, metadata_in_idat=True),
    "32-bit-ids": Layout(infe_version=3, iinf_version=1, iref_version=1, ipma_version=1, ipma_flags=1),
    "64-bit-sizes": Layout(large_sizes=True),
    "mdat-to-end": Layout(mdat_to_end=True),
    "xmp-uuid-box": Layout(xmp_uuid_box=True),
    "thumbnail": Layout(thumbnail=True, odd_reference=True, metadata_properties=True),
    "unknown-box": Layout(extra_top_level=(box(b"SECR", samples.MODEL),)),
}
