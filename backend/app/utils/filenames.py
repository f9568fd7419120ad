"""Client-supplied file names: made safe to store and display, and rendered into Content-Disposition.

The name is only ever shown back to people (the image is stored under a generated key), so the aim is
to keep what the user typed, in any script, while removing what could spoof, break or inject:
directory parts, control and bidi characters, and overlong names.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final
from urllib.parse import quote

MAX_FILENAME_BYTES: Final = 255  # the usual file-system limit (ext4, APFS, NTFS in UTF-16 units)

_FALLBACK_STEM: Final = "image"
# Joiners are format characters (category Cf) that emoji sequences and Indic and Persian scripts
# need to render correctly; they cannot reorder or hide text the way bidi controls can.
_KEPT_FORMAT_CHARACTERS: Final = frozenset({"\u200c", "\u200d"})
_PATH_SEPARATORS: Final = re.compile(r"[/\\]")
_WHITESPACE_RUN: Final = re.compile(r"\s+")
# Beyond this an "extension" is really part of the name and may be truncated with it.
_MAX_EXTENSION_BYTES: Final = 32
_DISPOSITIONS: Final = frozenset({"inline", "attachment"})
# Printable ASCII minus the quoted-string specials '"' and '\', and '%', which some browsers
# percent-decode even in a plain filename= parameter.
_ASCII_FALLBACK_SAFE: Final = frozenset(chr(code) for code in range(0x20, 0x7F)) - {'"', "\\", "%"}


def sanitize_filename(raw: str | None, *, fallback_extension: str) -> str:
    """Return a display-safe file name of at most 255 UTF-8 bytes, or "image" + fallback_extension."""
    if not raw:
        return _FALLBACK_STEM + fallback_extension
    name = unicodedata.normalize("NFC", raw)
    name = _drop_control_characters(name)
    name = _PATH_SEPARATORS.split(name)[-1]
    name = _WHITESPACE_RUN.sub(" ", name).strip(". ")
    name = _truncate_keeping_extension(name, MAX_FILENAME_BYTES)
    return name or _FALLBACK_STEM + fallback_extension


def content_disposition(filename: str, disposition: str = "inline") -> str:
    """Return an RFC 6266 Content-Disposition value with an ASCII filename and, if needed, filename*."""
    if disposition not in _DISPOSITIONS:
        raise ValueError(f"disposition must be one of {sorted(_DISPOSITIONS)}, not {disposition!r}")
    # Controls (CR, LF, NUL, ...) never reach the header, not even percent-encoded.
    name = _drop_control_characters(unicodedata.normalize("NFC", filename)) or "_"
    fallback = _ascii_fallback(name)
    value = f'{disposition}; filename="{fallback}"'
    if fallback != name:
        # RFC 8187 ext-value; quote(safe="") leaves only attr-chars unescaped.
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def _drop_control_characters(text: str) -> str:
    # Category C* covers controls (Cc, incl. NUL, CR, LF), format characters such as the bidi
    # overrides that make "gpj.exe" display as "exe.jpg" (Cf), lone surrogates that cannot be encoded
    # (Cs), and private-use and unassigned code points (Co, Cn) that render unpredictably.
    return "".join(
        char for char in text if char in _KEPT_FORMAT_CHARACTERS or not unicodedata.category(char).startswith("C")
    )


def _truncate_keeping_extension(name: str, max_bytes: int) -> str:
    if len(name.encode("utf-8")) <= max_bytes:
        return name
    stem, dot, suffix = name.rpartition(".")
    extension = dot + suffix
    if not stem or len(extension.encode("utf-8")) > _MAX_EXTENSION_BYTES:
        stem, extension = name, ""
    budget = max_bytes - len(extension.encode("utf-8"))
    # Cutting the encoded bytes can split a multi-byte character; "ignore" drops that partial tail.
    stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(". ")
    return stem + extension if stem else ""


def _ascii_fallback(name: str) -> str:
    """Transliterate to quoted-string-safe ASCII; each run of untranslatable characters becomes one "_"."""
    pieces: list[str] = []
    for char in name:
        if unicodedata.category(char).startswith("M"):
            # A combining mark belongs to the character before it, which has already been handled.
            continue
        ascii_form = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode("ascii")
        ascii_form = "".join(part for part in ascii_form if part in _ASCII_FALLBACK_SAFE)
        if ascii_form:
            pieces.append(ascii_form)
        elif not pieces or pieces[-1] != "_":
            pieces.append("_")
    return "".join(pieces).strip() or "_"
