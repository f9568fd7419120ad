"""ISO base media boxes (ISO/IEC 14496-12) and the item tables of HEIF (ISO/IEC 23008-12).

AVIF, HEIC and HEIF keep still images as *items*, described by boxes inside the top-level `meta`:
`pitm` names the primary item, `iinf` gives each item's type, `iloc` where its bytes are, `iref`
how items relate, and `iprp` its properties (`ipco` lists them, `ipma` associates them with items).
Image sequences add a `moov` with tracks, as in MP4.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, NamedTuple

from app.media.containers import ByteData, MalformedContainer

# A version 1 `iloc` may give offsets and lengths in 0, 4 or 8 bytes, nothing else.
_FIELD_SIZES: Final = frozenset({0, 4, 8})
# Real files have a few boxes in each container and at most a few hundred items (a photo split in
# tiles); walking costs a microsecond or more apiece, so a box or table past these is hostile.
MAX_BOXES: Final = 100_000
MAX_ENTRIES: Final = 10_000
# An image sequence has a chunk or so per frame, and the frame limit is far below this.
MAX_CHUNKS: Final = 100_000
# Where a track keeps its sample tables: trak/mdia/minf/stbl.
SAMPLE_TABLE_PATH: Final = (b"mdia", b"minf", b"stbl")


class Box(NamedTuple):
    """One box; offsets index the walked data."""

    type: bytes
    start: int
    payload_start: int  # past size, type, 64-bit size and the `uuid` user type, when present
    end: int


def iter_boxes(data: ByteData, start: int, end: int) -> Iterator[Box]:
    """Yield the boxes that fill data[start:end] exactly (size 0 runs to `end`, size 1 is 64-bit)."""
    position = start
    for _ in range(MAX_BOXES):
        if position >= end:
            return
        if position + 8 > end:
            raise MalformedContainer("a box header is cut off")
        size, box_type = struct.unpack_from(">I4s", data, position)
        header_size = 8
        if size == 1:
            if position + 16 > end:
                raise MalformedContainer("a 64-bit box size is cut off")
            (size,) = struct.unpack_from(">Q", data, position + 8)
            header_size = 16
        elif size == 0:
            size = end - position
        if box_type == b"uuid":
            header_size += 16
        if size < header_size or position + size > end:
            raise MalformedContainer(f"the box {box_type!r} runs past its parent")
        yield Box(box_type, position, position + header_size, position + size)
        position += size
    raise MalformedContainer(f"a box holds more than {MAX_BOXES} boxes")


def children(data: ByteData, box: Box, *, full: bool = False) -> Iterator[Box]:
    """The boxes inside `box`; a full box has version and flags before them."""
    return iter_boxes(data, box.payload_start + 4 if full else box.payload_start, box.end)


def find_child(data: ByteData, box: Box, box_type: bytes, *, full: bool = False) -> Box | None:
    return next((child for child in children(data, box, full=full) if child.type == box_type), None)


def descend(data: ByteData, box: Box, path: tuple[bytes, ...]) -> Box | None:
    """The box at the end of `path` (box types, each the first child of its type), or None."""
    found: Box | None = box
    for box_type in path:
        found = find_child(data, found, box_type) if found is not None else None
    return found


class FieldReader:
    """Reads big-endian fields one after another inside a box, never past its end."""

    def __init__(self, data: ByteData, start: int, end: int) -> None:
        self.data = data
        self.position = start
        self.end = end

    def uint(self, size: int) -> int:
        """An unsigned integer of `size` bytes (0 reads as 0, as `iloc` means it)."""
        if self.position + size > self.end:
            raise MalformedContainer("a box field runs past the end of its box")
        value = int.from_bytes(self.data[self.position : self.position + size], "big")
        self.position += size
        return value

    def skip(self, size: int) -> None:
        if self.position + size > self.end:
            raise MalformedContainer("a box field runs past the end of its box")
        self.position += size

    def full_box_header(self) -> tuple[int, int]:
        """The version and flags that open a full box."""
        version_and_flags = self.uint(4)
        return version_and_flags >> 24, version_and_flags & 0xFFFFFF


def read_full_box(data: ByteData, box: Box) -> tuple[int, int, FieldReader]:
    """Version, flags, and a reader positioned after them."""
    reader = FieldReader(data, box.payload_start, box.end)
    version, flags = reader.full_box_header()
    return version, flags, reader


# --- item information (iinf / infe) ---


class ItemInfo(NamedTuple):
    """One `infe`; versions 0 and 1 name no item type (None)."""

    item_id: int
    item_type: bytes | None
    box: Box


@dataclass(frozen=True, slots=True)
class ItemInfoTable:
    """An `iinf`: its version (which sizes the entry count) and one entry per item."""

    version: int
    entries: tuple[ItemInfo, ...]


def read_iinf(data: ByteData, box: Box) -> ItemInfoTable:
    version, _flags, reader = read_full_box(data, box)
    entry_count = _entry_count(reader.uint(2 if version == 0 else 4))
    boxes = itertools.islice(iter_boxes(data, reader.position, box.end), entry_count + 1)
    entries = tuple(_read_infe(data, child) for child in boxes)
    if len(entries) != entry_count:
        raise MalformedContainer("the iinf box's entry count does not match its entries")
    return ItemInfoTable(version, entries)


def _read_infe(data: ByteData, box: Box) -> ItemInfo:
    if box.type != b"infe":
        raise MalformedContainer("an iinf box holds something other than infe boxes")
    version, _flags, reader = read_full_box(data, box)
    if version < 2:
        return ItemInfo(reader.uint(2), None, box)
    item_id = reader.uint(2 if version == 2 else 4)
    reader.skip(2)  # item_protection_index
    return ItemInfo(item_id, reader.uint(4).to_bytes(4, "big"), box)


# --- item locations (iloc) ---


class ItemLocation(NamedTuple):
    """Where one item's bytes are; `start`/`end` delimit its entry inside the iloc box."""

    item_id: int
    construction_method: int  # 0: offsets into the file, 1: into the idat box, 2: into another item
    data_reference_index: int  # 0: this file
    # (offset, length) pairs, the base offset already added; a length of 0 means "to the end".
    extents: tuple[tuple[int, int], ...]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class ItemLocationTable:
    """An `iloc`: its version (which sizes the item count), its header and one entry per item."""

    version: int
    header: bytes  # version, flags and the field sizes, copied as they are
    locations: tuple[ItemLocation, ...]


def read_iloc(data: ByteData, box: Box) -> ItemLocationTable:
    version, _flags, reader = read_full_box(data, box)
    if version > 2:
        raise MalformedContainer(f"iloc version {version} is unknown")
    sizes = reader.uint(2)
    offset_size, length_size, base_offset_size = sizes >> 12, (sizes >> 8) & 0xF, (sizes >> 4) & 0xF
    index_size = sizes & 0xF if version > 0 else 0
    if not {offset_size, length_size, base_offset_size, index_size} <= _FIELD_SIZES:
        raise MalformedContainer("an iloc field size is not 0, 4 or 8")
    header = bytes(data[box.payload_start : reader.position])
    item_count = _entry_count(reader.uint(2 if version < 2 else 4))
    locations = []
    for _ in range(item_count):
        entry_start = reader.position
        item_id = reader.uint(2 if version < 2 else 4)
        construction_method = reader.uint(2) & 0xF if version > 0 else 0
        data_reference_index = reader.uint(2)
        base_offset = reader.uint(base_offset_size)
        extent_count = reader.uint(2)
        extents = []
        if index_size + offset_size + length_size == 0:
            # Every extent reads no bytes, so the count is no measure of the data: one stands for all.
            extent_count = min(extent_count, 1)
        for _ in range(extent_count):
            reader.skip(index_size)
            offset = reader.uint(offset_size)
            extents.append((base_offset + offset, reader.uint(length_size)))
        locations.append(
            ItemLocation(
                item_id, construction_method, data_reference_index, tuple(extents), entry_start, reader.position
            )
        )
    return ItemLocationTable(version, header, tuple(locations))


# --- item references (iref) ---


class ItemReference(NamedTuple):
    """One reference box: `from_id` refers to each of `to_ids` with `reference_type` ('cdsc', 'thmb'...)."""

    reference_type: bytes
    from_id: int
    to_ids: tuple[int, ...]
    box: Box


def read_iref(data: ByteData, box: Box) -> tuple[int, tuple[ItemReference, ...]]:
    """The iref version (0: 16-bit item ids, 1: 32-bit) and its references."""
    version, _flags, reader = read_full_box(data, box)
    id_size = 2 if version == 0 else 4
    references = []
    for child in iter_boxes(data, reader.position, box.end):
        child_reader = FieldReader(data, child.payload_start, child.end)
        from_id = child_reader.uint(id_size)
        to_ids = tuple(child_reader.uint(id_size) for _ in range(child_reader.uint(2)))
        references.append(ItemReference(child.type, from_id, to_ids, child))
    return version, tuple(references)


# --- item properties (ipco / ipma) ---


class PropertyAssociation(NamedTuple):
    """One `ipma` entry: an item's 1-based property indices; `start`/`end` delimit the entry."""

    item_id: int
    property_indices: tuple[int, ...]
    start: int
    end: int


def read_ipma(data: ByteData, box: Box) -> tuple[PropertyAssociation, ...]:
    """One entry per item that has properties."""
    version, flags, reader = read_full_box(data, box)
    entry_count = _entry_count(reader.uint(4))
    # Flag 1 widens each association to 16 bits: the top bit says "essential", the rest the index.
    association_size, index_mask = (2, 0x7FFF) if flags & 1 else (1, 0x7F)
    associations = []
    for _ in range(entry_count):
        entry_start = reader.position
        item_id = reader.uint(2 if version < 1 else 4)
        indices = tuple(reader.uint(association_size) & index_mask for _ in range(reader.uint(1)))
        associations.append(PropertyAssociation(item_id, indices, entry_start, reader.position))
    return tuple(associations)


def _entry_count(count: int) -> int:
    if count > MAX_ENTRIES:
        raise MalformedContainer(f"an item table lists more than {MAX_ENTRIES} entries")
    return count


def read_pitm(data: ByteData, box: Box) -> int:
    """The primary item's id."""
    version, _flags, reader = read_full_box(data, box)
    return reader.uint(2 if version == 0 else 4)


def read_ispe(data: ByteData, box: Box) -> tuple[int, int]:
    """The (width, height) an image spatial extents property gives."""
    _version, _flags, reader = read_full_box(data, box)
    return reader.uint(4), reader.uint(4)


def read_sample_count(data: ByteData, box: Box) -> int:
    """The sample count of an `stsz` or `stz2` box (both keep it in the same place)."""
    _version, _flags, reader = read_full_box(data, box)
    reader.skip(4)  # stsz: the uniform sample size; stz2: reserved bits and the field size
    return reader.uint(4)


# --- track samples (moov/trak/mdia/minf/stbl) ---


def read_sample_ranges(data: ByteData, sample_table: Box) -> list[tuple[int, int]]:
    """Where a track's samples lie in the file, chunk by chunk, as (start, end) offsets.

    `stco`/`co64` give each chunk's offset, `stsc` how many samples each chunk holds (in runs of
    chunks), and `stsz` every sample's size, or one size for all; a chunk's samples are contiguous.
    """
    tables = {child.type: child for child in children(data, sample_table)}
    offsets_box = tables.get(b"stco") or tables.get(b"co64")
    if offsets_box is None or b"stsc" not in tables or b"stsz" not in tables:
        return []
    chunk_offsets = _read_table(data, offsets_box, 8 if offsets_box.type == b"co64" else 4, 1)
    if len(chunk_offsets) > MAX_CHUNKS:
        raise MalformedContainer(f"a track has more than {MAX_CHUNKS} chunks")
    runs = _read_table(data, tables[b"stsc"], 4, 3)  # first chunk, samples per chunk, description
    uniform_size, sizes = _read_sample_sizes(data, tables[b"stsz"])
    ranges = []
    run = -3
    sample = 0
    for chunk, offset in enumerate(chunk_offsets, start=1):
        while run + 3 < len(runs) and runs[run + 3] <= chunk:
            run += 3
        per_chunk = runs[run + 1] if run >= 0 else 0
        length = uniform_size * per_chunk if uniform_size else sum(sizes[sample : sample + per_chunk])
        sample += per_chunk
        ranges.append((offset, offset + length))
    return ranges


def _read_table(data: ByteData, box: Box, field_size: int, fields_per_entry: int) -> tuple[int, ...]:
    """The entries (fixed-size unsigned fields, flattened) that follow a full box's entry count."""
    _version, _flags, reader = read_full_box(data, box)
    return _read_fields(data, reader, reader.uint(4) * fields_per_entry, field_size)


def _read_sample_sizes(data: ByteData, box: Box) -> tuple[int, tuple[int, ...]]:
    """`stsz`: one size for every sample, or 0 and each sample's size."""
    _version, _flags, reader = read_full_box(data, box)
    uniform_size = reader.uint(4)
    sample_count = reader.uint(4)
    if uniform_size:
        return uniform_size, ()
    return 0, _read_fields(data, reader, sample_count, 4)


def _read_fields(data: ByteData, reader: FieldReader, count: int, field_size: int) -> tuple[int, ...]:
    if reader.position + count * field_size > reader.end:
        raise MalformedContainer("a sample table runs past the end of its box")
    values: tuple[int, ...] = struct.unpack_from(f">{count}{'Q' if field_size == 8 else 'I'}", data, reader.position)
    return values
