"""Durations as people type them: `90` (seconds), `30m`, `12h`, `7d`, `2w`."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d{1,9})([smhdw]?)")


def parse_duration(text: str) -> timedelta:
    """The duration `text` spells; ValueError for anything else (zero included)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError("a duration is a whole number of seconds, or a number followed by m, h, d or w")
    amount, unit = match.groups()
    seconds = int(amount) * _UNITS[unit or "s"]
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    return timedelta(seconds=seconds)
