"""Durations as people type them for `expires_in` and `chitram upload --expires`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.utils.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90", timedelta(seconds=90)),
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        (" 7D ", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_durations_people_type(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0", "0d", "-5", "7 d", "1.5h", "7days", "1y", "h", "9999999999"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
