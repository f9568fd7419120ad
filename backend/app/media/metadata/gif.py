"""Metadata removal for GIF: block by block, no LZW decoding.

Images and graphic control extensions (delays, disposal, transparency) make the animation; of the
application extensions only looping (NETSCAPE2.0, ANIMEXTS1.0) and the ICC profile (ICCRGBG1012)
matter to a viewer. Comments, plain text, XMP and every other extension go.
"""

from __future__ import annotations

from typing import Final

from app.media.containers import gif

_KEPT_APPLICATIONS: Final = frozenset({b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012"})
# Eight bytes of identifier and three of authentication code.
_APPLICATION_ID_SIZE: Final = 11


def strip_gif(data: bytes) -> bytes:
    """The GIF with comments, plain text and unknown extensions removed; it ends with one trailer."""
    view = memoryview(data)
    screen = gif.read_screen(view)
    parts: list[bytes | memoryview] = [view[: screen.end]]
    for block in gif.iter_blocks(view, screen.end):
        if isinstance(block, gif.ExtensionBlock) and not _is_kept_extension(view, block):
            continue
        parts.append(view[block.start : block.end])
        if isinstance(block, gif.Trailer):
            break
    else:
        # The data ended cleanly between blocks: decoders stop there, so say so explicitly.
        parts.append(bytes([gif.TRAILER]))
    return b"".join(parts)


def _is_kept_extension(view: memoryview, block: gif.ExtensionBlock) -> bool:
    if block.label == gif.GRAPHIC_CONTROL_LABEL:
        return True
    if block.label != gif.APPLICATION_LABEL:
        return False
    return block.first_sub_block(view)[:_APPLICATION_ID_SIZE] in _KEPT_APPLICATIONS
