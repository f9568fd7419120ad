"""The in-memory copies of small files: bounded in bytes, checked against the checksum, expiring."""

from __future__ import annotations

from app.services.hot_files import HotFiles


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_files_go_first_once_the_byte_budget_is_spent() -> None:
    hot = HotFiles(max_bytes=250, max_object_bytes=100)
    for key in ("a", "b"):
        hot.put(key, "sum", bytes(100))
    assert hot.get("a", "sum") is not None  # "a" is now the most recently used
    hot.put("c", "sum", bytes(100))
    assert [hot.get(key, "sum") is not None for key in ("a", "b", "c")] == [True, False, True]
    assert hot.held_bytes == 200


def test_a_file_over_the_object_limit_is_not_held() -> None:
    hot = HotFiles(max_bytes=1000, max_object_bytes=100)
    assert not hot.holds(101)
    hot.put("big", "sum", bytes(101))
    assert hot.get("big", "sum") is None
    assert hot.held_bytes == 0


def test_a_copy_with_another_checksum_is_not_served() -> None:
    hot = HotFiles(max_bytes=1000, max_object_bytes=100)
    hot.put("k", "old", b"old bytes")
    assert hot.get("k", "new") is None
    assert hot.held_bytes == 0


def test_copies_expire() -> None:
    clock = Clock()
    hot = HotFiles(max_bytes=1000, max_object_bytes=100, ttl_seconds=60, clock=clock)
    hot.put("k", "sum", b"bytes")
    clock.now = 59.9
    assert hot.get("k", "sum") == b"bytes"
    clock.now = 60.0
    assert hot.get("k", "sum") is None


def test_zero_budget_holds_nothing() -> None:
    hot = HotFiles(max_bytes=0, max_object_bytes=1024 * 1024)
    assert not hot.holds(1)
    hot.put("k", "sum", b"x")
    assert hot.get("k", "sum") is None
