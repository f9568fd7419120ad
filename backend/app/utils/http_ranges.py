"""Single byte-range requests (RFC 9110 §14) and entity-tag matching, as pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import RangeNotSatisfiable

_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range a `Range` header asks for, or None to send the whole representation.

    Headers we do not understand, and multi-range requests, are ignored (a full 200 is always a
    valid answer); a well-formed single range outside the file raises `RangeNotSatisfiable`.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    # ASCII digits only ("²".isdigit() is true, and int() of it fails), and few enough to be a size.
    if not dash or not (_DIGITS.fullmatch(first) or _DIGITS.fullmatch(last)):
        return None
    if not (first == "" or _DIGITS.fullmatch(first)) or not (last == "" or _DIGITS.fullmatch(last)):
        return None
    unsatisfiable = RangeNotSatisfiable(details={"size": size}, headers={"Content-Range": f"bytes */{size}"})
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignore, as RFC 9110 says
    if start >= size:
        raise unsatisfiable
    end = int(last) if last else size - 1
    return ByteRange(start, min(end, size - 1))


def etag_matches(header: str | None, etag: str) -> bool:
    """Weak comparison for If-None-Match: `*`, or any listed tag equal to `etag` (W/ ignored)."""
    if not header:
        return False
    bare = etag.removeprefix("W/")
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == bare:
            return True
    return False
