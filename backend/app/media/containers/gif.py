"""GIF blocks: the screen descriptor and global colour table, then images, extensions and the trailer.

Images and extensions end in data sub-blocks (a length byte, then that many bytes) closed by an
empty one. Bytes between blocks that start none of them are skipped, as Pillow skips them.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, NamedTuple

from app.media.containers import ByteData, MalformedContainer

IMAGE_SEPARATOR: Final = 0x2C
EXTENSION_INTRODUCER: Final = 0x21
TRAILER: Final = 0x3B
GRAPHIC_CONTROL_LABEL: Final = 0xF9
APPLICATION_LABEL: Final = 0xFF

# Header ("GIF87a" / "GIF89a") and logical screen descriptor.
_SCREEN_END: Final = 13
_NEXT_BLOCK: Final = re.compile(rb"[,!;]")
# Real files have two or three blocks a frame, and encoders fill data sub-blocks (255 bytes each);
# walking costs a microsecond a block and a tenth of one a sub-block, so files of tiny blocks or
# sub-blocks past these counts are hostile and are refused rather than walked.
MAX_BLOCKS: Final = 50_000
MAX_SUB_BLOCKS: Final = 500_000


@dataclass(frozen=True, slots=True)
class Screen:
    """The logical screen descriptor; `end` is past the global colour table."""

    width: int
    height: int
    end: int


class ImageBlock(NamedTuple):
    """An image descriptor with its colour table and image data."""

    start: int
    end: int
    left: int
    top: int
    width: int
    height: int


class ExtensionBlock(NamedTuple):
    """An extension; its first data sub-block (length byte first) starts at `body_start`."""

    start: int
    end: int
    label: int
    body_start: int

    def first_sub_block(self, data: ByteData) -> bytes:
        """The payload of the first data sub-block (for an application extension, its identifier)."""
        length = data[self.body_start]
        return bytes(data[self.body_start + 1 : self.body_start + 1 + length])


class Trailer(NamedTuple):
    start: int
    end: int


Block = ImageBlock | ExtensionBlock | Trailer


def read_screen(data: ByteData) -> Screen:
    """The logical screen size and where the blocks start."""
    if len(data) < _SCREEN_END or data[:6] not in (b"GIF87a", b"GIF89a"):
        raise MalformedContainer("a GIF starts with GIF87a or GIF89a and a screen descriptor")
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    end = _SCREEN_END + _colour_table_size(flags)
    if end > len(data):
        raise MalformedContainer("the GIF's global colour table is cut off")
    return Screen(width, height, end)


def iter_blocks(data: ByteData, start: int) -> Iterator[Block]:
    """Yield the blocks from `start` up to and including the trailer, or to a clean end of the data."""
    size = len(data)
    position = start
    sub_block_budget = MAX_SUB_BLOCKS
    for _ in range(MAX_BLOCKS):
        found = _NEXT_BLOCK.search(data, position)
        if found is None:
            return
        block_start = found.start()
        introducer = data[block_start]
        if introducer == TRAILER:
            yield Trailer(block_start, block_start + 1)
            return
        if introducer == EXTENSION_INTRODUCER:
            if block_start + 2 > size:
                raise MalformedContainer("a GIF extension is cut off")
            body_start = block_start + 2
            position, sub_block_budget = _skip_sub_blocks(data, body_start, sub_block_budget)
            yield ExtensionBlock(block_start, position, data[block_start + 1], body_start)
            continue
        # Separator (1), left, top, width, height (2 each), flags (1), then the LZW minimum code size.
        if block_start + 11 > size:
            raise MalformedContainer("a GIF image descriptor is cut off")
        left, top, width, height, flags = struct.unpack_from("<HHHHB", data, block_start + 1)
        # Skip the local colour table and the LZW minimum code size.
        image_data = block_start + 10 + _colour_table_size(flags) + 1
        position, sub_block_budget = _skip_sub_blocks(data, image_data, sub_block_budget)
        yield ImageBlock(block_start, position, left, top, width, height)
    raise MalformedContainer(f"the GIF has more than {MAX_BLOCKS} blocks")


def _colour_table_size(flags: int) -> int:
    return 3 << ((flags & 0x07) + 1) if flags & 0x80 else 0


def _skip_sub_blocks(data: ByteData, position: int, budget: int) -> tuple[int, int]:
    """The offset past the empty sub-block that closes the sequence at `position`, and the budget left."""
    size = len(data)
    for remaining in range(budget, 0, -1):
        if position >= size:
            raise MalformedContainer("GIF data sub-blocks run past the end of the data")
        length = data[position]
        position += length + 1
        if length == 0:
            return position, remaining - 1
    raise MalformedContainer(f"the GIF has more than {MAX_SUB_BLOCKS} data sub-blocks")
