"""Metadata removal for AVIF, HEIC and HEIF (ISO base media files), box by box, without decoding.

Metadata lives in items of type Exif, mime (XMP and the like) and uri: they are removed from the
item tables of the top-level `meta` and their bytes zeroed where they lie. Image items and every
property (orientation, mirroring, crop, colour, size) stay as they are, thumbnails included.

Files are full of absolute offsets (`iloc` construction method 0, `stco`/`co64` chunk offsets), so
nothing outside `meta` moves: the shorter `meta` is followed by a `free` box that takes the space it
gave up, and every other box that goes becomes a zeroed `free` box of the same size.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias

from app.media.containers import MalformedContainer, isobmff
from app.media.containers.isobmff import Box, ItemLocation, ItemLocationTable

# A half-open span of file offsets: (start, end).
Range: TypeAlias = tuple[int, int]

METADATA_ITEM_TYPES: Final = frozenset({b"Exif", b"mime", b"uri "})
_KEPT_TOP_LEVEL: Final = frozenset({b"ftyp", b"meta", b"moov", b"mdat", b"free", b"skip", b"idat"})
# Top-level boxes whose payload is structure, never item data, so never zeroed.
_STRUCTURE: Final = frozenset({b"ftyp", b"meta", b"moov"})
_MOOV_METADATA: Final = frozenset({b"udta", b"meta"})
# The boxes of a movie that hold only boxes; metadata inside anything else would not be a box.
_MOOV_CONTAINERS: Final = frozenset({b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"tref"})
# moov/trak/mdia/minf/stbl is five deep; a deeper nesting of containers is hostile.
_MAX_MOOV_DEPTH: Final = 16
_FREE_HEADER_SIZE: Final = 8


def strip_isobmff(data: bytes) -> bytes:
    """The file with its metadata items, user data and unknown top-level boxes gone; the same size."""
    view = memoryview(data)
    out = bytearray(data)
    meta: Box | None = None
    removed: list[Range] = []
    zeroable: list[Range] = []
    samples: list[Range] = []
    for box in isobmff.iter_boxes(view, 0, len(view)):
        if box.type == b"meta" and meta is None:
            meta = box
        elif box.type == b"moov":
            samples += _track_samples(view, box)
            removed += _blank_movie_metadata(view, out, box)
        elif box.type not in _KEPT_TOP_LEVEL or box.type == b"meta":
            # Only the first `meta` is read by decoders: a second one is metadata like any other box.
            _blank(out, box)
        if box.type not in _STRUCTURE:
            zeroable.append((box.payload_start, box.end))
    # Bytes an image item or a track sample also uses stay, whatever a metadata item claims.
    in_use = samples
    items = _ItemTables.read(view, meta) if meta is not None else None
    if items is not None:
        removed += items.removed_extents(len(view))
        in_use += items.kept_extents(len(view))
        if items.idat is not None:
            zeroable.append((items.idat.payload_start, items.idat.end))
    _zero(out, _subtract(_intersect(_merge(removed), _merge(zeroable)), _merge(in_use)))
    if meta is not None and items is not None and items.removed_ids:
        items.check_kept_data_outside(meta, len(view))
        out[meta.start : meta.end] = _padded(items.rebuild_meta(memoryview(out), meta), meta)
    return bytes(out)


@dataclass(frozen=True)
class _ItemTables:
    """The item boxes of the top-level `meta` and the metadata items among them."""

    children: tuple[Box, ...]
    iinf: isobmff.ItemInfoTable | None
    iloc: ItemLocationTable | None
    idat: Box | None
    removed_ids: frozenset[int]

    @classmethod
    def read(cls, data: memoryview, meta: Box) -> _ItemTables:
        children = tuple(isobmff.children(data, meta, full=True))
        iinf_box, iloc_box, idat = (_single_child(children, box_type) for box_type in (b"iinf", b"iloc", b"idat"))
        iinf = isobmff.read_iinf(data, iinf_box) if iinf_box else None
        iloc = isobmff.read_iloc(data, iloc_box) if iloc_box else None
        entries = iinf.entries if iinf else ()
        removed_ids = frozenset(entry.item_id for entry in entries if entry.item_type in METADATA_ITEM_TYPES)
        return cls(children, iinf, iloc, idat, removed_ids)

    def _extents(self, *, removed: bool, file_size: int) -> list[Range]:
        locations = self.iloc.locations if self.iloc else ()
        chosen = (location for location in locations if (location.item_id in self.removed_ids) == removed)
        return [extent for location in chosen for extent in _absolute_extents(location, self.idat, file_size)]

    def removed_extents(self, file_size: int) -> list[Range]:
        return self._extents(removed=True, file_size=file_size)

    def kept_extents(self, file_size: int) -> list[Range]:
        return self._extents(removed=False, file_size=file_size)

    def check_kept_data_outside(self, meta: Box, file_size: int) -> None:
        """Refuse files whose image data sits inside `meta` by absolute offset: rebuilding moves it."""
        locations = self.iloc.locations if self.iloc else ()
        for location in locations:
            if location.item_id in self.removed_ids or location.construction_method != 0:
                continue
            for start, end in _absolute_extents(location, self.idat, file_size):
                if start < meta.end and end > meta.start:
                    raise MalformedContainer("an item's data lies inside the meta box by absolute offset")

    def rebuild_meta(self, data: memoryview, meta: Box) -> bytes:
        """`meta` without the metadata items, from `data` (where their bytes are already zeroed)."""
        parts: list[bytes | memoryview] = [data[meta.payload_start : meta.payload_start + 4]]
        for child in self.children:
            if child.type == b"iinf" and self.iinf is not None:
                parts.append(self._rebuild_iinf(data, child, self.iinf))
            elif child.type == b"iloc" and self.iloc is not None:
                parts.append(self._rebuild_iloc(data, self.iloc))
            elif child.type == b"iref":
                parts.append(self._rebuild_iref(data, child))
            elif child.type == b"iprp":
                parts.append(self._rebuild_iprp(data, child))
            else:
                parts.append(data[child.start : child.end])
        return _box(b"meta", b"".join(parts))

    def _rebuild_iinf(self, data: memoryview, box: Box, iinf: isobmff.ItemInfoTable) -> bytes:
        kept = [entry for entry in iinf.entries if entry.item_id not in self.removed_ids]
        count = struct.pack(">H" if iinf.version == 0 else ">I", len(kept))
        version_and_flags = data[box.payload_start : box.payload_start + 4]
        return _box(b"iinf", b"".join([version_and_flags, count, *(data[e.box.start : e.box.end] for e in kept)]))

    def _rebuild_iloc(self, data: memoryview, iloc: ItemLocationTable) -> bytes:
        kept = [location for location in iloc.locations if location.item_id not in self.removed_ids]
        count = struct.pack(">H" if iloc.version < 2 else ">I", len(kept))
        return _box(b"iloc", b"".join([iloc.header, count, *(data[loc.start : loc.end] for loc in kept)]))

    def _rebuild_iref(self, data: memoryview, box: Box) -> bytes:
        version, references = isobmff.read_iref(data, box)
        id_format = ">H" if version == 0 else ">I"
        parts: list[bytes | memoryview] = []
        for reference in references:
            to_ids = [item_id for item_id in reference.to_ids if item_id not in self.removed_ids]
            if reference.from_id in self.removed_ids or not to_ids:
                continue
            if len(to_ids) == len(reference.to_ids):
                parts.append(data[reference.box.start : reference.box.end])
                continue
            payload = [struct.pack(id_format, reference.from_id), struct.pack(">H", len(to_ids))]
            payload += (struct.pack(id_format, item_id) for item_id in to_ids)
            parts.append(_box(reference.reference_type, b"".join(payload)))
        if not parts:
            return b""
        return _box(b"iref", b"".join([data[box.payload_start : box.payload_start + 4], *parts]))

    def _rebuild_iprp(self, data: memoryview, box: Box) -> bytes:
        parts: list[bytes | memoryview] = []
        for child in isobmff.children(data, box):
            if child.type != b"ipma":
                parts.append(data[child.start : child.end])
                continue
            kept = [entry for entry in isobmff.read_ipma(data, child) if entry.item_id not in self.removed_ids]
            version_and_flags = data[child.payload_start : child.payload_start + 4]
            entries = (data[entry.start : entry.end] for entry in kept)
            parts.append(_box(b"ipma", b"".join([version_and_flags, struct.pack(">I", len(kept)), *entries])))
        return _box(b"iprp", b"".join(parts))


def _single_child(children: Iterable[Box], box_type: bytes) -> Box | None:
    found = [child for child in children if child.type == box_type]
    if len(found) > 1:
        raise MalformedContainer(f"the meta box holds more than one {box_type!r} box")
    return found[0] if found else None


def _absolute_extents(location: ItemLocation, idat: Box | None, file_size: int) -> list[Range]:
    """The item's extents as offsets into the file, cut to the data they can point into."""
    if location.data_reference_index != 0:
        return []  # in another file
    if location.construction_method == 0:
        base, limit = 0, file_size
    elif location.construction_method == 1 and idat is not None:
        base, limit = idat.payload_start, idat.end
    else:
        return []  # in another item, whose own extents say where
    extents = []
    for offset, length in location.extents:
        start = base + offset
        end = min(start + length if length else limit, limit)
        if start < end:
            extents.append((start, end))
    return extents


def _track_samples(data: memoryview, moov: Box) -> list[Range]:
    """Where every track of the movie keeps its samples."""
    ranges: list[Range] = []
    for trak in isobmff.children(data, moov):
        sample_table = isobmff.descend(data, trak, isobmff.SAMPLE_TABLE_PATH) if trak.type == b"trak" else None
        if sample_table is not None:
            ranges += isobmff.read_sample_ranges(data, sample_table)
    return ranges


def _blank_movie_metadata(data: memoryview, out: bytearray, moov: Box) -> list[Range]:
    """Turn every `udta` and `meta` in the movie into a zeroed `free`; return where their items' bytes are."""
    item_extents: list[Range] = []
    pending = [(moov, 1)]
    while pending:
        box, depth = pending.pop()
        for child in isobmff.children(data, box):
            if child.type in _MOOV_METADATA:
                if child.type == b"meta":
                    item_extents += _track_metadata_extents(data, child)
                _blank(out, child)
            elif child.type in _MOOV_CONTAINERS:
                if depth >= _MAX_MOOV_DEPTH:
                    raise MalformedContainer("the movie box nests containers too deep")
                pending.append((child, depth + 1))
    return item_extents


def _track_metadata_extents(data: memoryview, meta: Box) -> list[Range]:
    """Where the metadata items of a movie's `meta` keep their bytes, as far as it can be read.

    The box itself is blanked whatever it holds; reading it only finds more bytes to zero.
    """
    try:
        items = _ItemTables.read(data, meta)
    except MalformedContainer:
        return []
    return items.removed_extents(len(data))


def _blank(out: bytearray, box: Box) -> None:
    """Make `box` a `free` box of the same size (its size field unchanged) with a zeroed payload."""
    out[box.start + 4 : box.start + 8] = b"free"
    large_size = out[box.start : box.start + 4] == b"\x00\x00\x00\x01"
    payload_start = box.start + (16 if large_size else 8)
    out[payload_start : box.end] = bytes(box.end - payload_start)


def _zero(out: bytearray, ranges: Iterable[Range]) -> None:
    for start, end in ranges:
        out[start:end] = bytes(end - start)


def _box(box_type: bytes, payload: bytes) -> bytes:
    size = _FREE_HEADER_SIZE + len(payload)
    if size > 0xFFFFFFFF:
        return struct.pack(">I4sQ", 1, box_type, size + 8) + payload
    return struct.pack(">I4s", size, box_type) + payload


def _padded(new_meta: bytes, meta: Box) -> bytes:
    """The rebuilt `meta` followed by a `free` box that fills the space it no longer takes."""
    freed = (meta.end - meta.start) - len(new_meta)
    # At least one whole infe box (20 bytes or more) went, so the free box always has room for its header.
    assert freed >= _FREE_HEADER_SIZE, freed
    return new_meta + _box(b"free", bytes(freed - _FREE_HEADER_SIZE))


# --- spans of offsets; hostile item tables can list many, so each step sorts once and sweeps ---


def _merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, disjoint, non-empty spans covering the same offsets."""
    merged: list[Range] = []
    for start, end in sorted(ranges):
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _intersect(first: list[Range], second: list[Range]) -> list[Range]:
    """The offsets in both; each argument sorted and disjoint, as `_merge` returns them."""
    result: list[Range] = []
    i = j = 0
    while i < len(first) and j < len(second):
        start, end = max(first[i][0], second[j][0]), min(first[i][1], second[j][1])
        if start < end:
            result.append((start, end))
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    return result


def _subtract(ranges: list[Range], holes: list[Range]) -> list[Range]:
    """The offsets in `ranges` but in no hole; each argument sorted and disjoint."""
    result: list[Range] = []
    j = 0
    for start, end in ranges:
        while j < len(holes) and holes[j][1] <= start:
            j += 1
        position, k = start, j
        while k < len(holes) and holes[k][0] < end:
            if holes[k][0] > position:
                result.append((position, holes[k][0]))
            position = max(position, holes[k][1])
            k += 1
        if position < end:
            result.append((position, end))
    return result
