"""The near copy's own rules, with a fake clock: TTL, size bound, and reads that raced an invalidation."""

from __future__ import annotations

from app.services.cache import Metadata
from app.services.near_cache import NearCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def metadata(n: int) -> Metadata:
    return Metadata.of({"id": f"image-{n}"})


def live_cache(clock: Clock, *, ttl_seconds: float = 5.0, max_entries: int = 100) -> NearCache:
    near = NearCache(ttl_seconds=ttl_seconds, max_entries=max_entries, clock=clock)
    near.set_live(True)
    return near


def test_entry_expires_after_its_ttl() -> None:
    clock = Clock()
    near = live_cache(clock)
    near.put("a", metadata(1), near.generation)
    clock.now += 4.9
    assert near.get("a") == metadata(1)
    clock.now += 0.2
    assert near.get("a") is None


def test_read_that_raced_an_invalidation_is_not_kept() -> None:
    near = live_cache(Clock())
    started_in = near.generation  # a read from Redis starts...
    near.forget("a")  # ...an announcement for any image arrives meanwhile...
    near.put("a", metadata(1), started_in)  # ...so what the read returned may be stale
    assert near.get("a") is None
    near.put("a", metadata(1), near.generation)
    assert near.get("a") == metadata(1)


def test_nothing_is_kept_or_served_while_not_live() -> None:
    near = NearCache(ttl_seconds=5.0, clock=Clock())
    near.put("a", metadata(1), near.generation)
    near.set_live(True)
    assert near.get("a") is None
    near.put("a", metadata(1), near.generation)
    near.set_live(False)  # the channel was lost: announcements may have been missed
    near.set_live(True)
    assert near.get("a") is None


def test_least_recently_stored_entries_go_first_past_the_bound() -> None:
    near = live_cache(Clock(), max_entries=3)
    for n in range(5):
        near.put(f"k{n}", metadata(n), near.generation)
    assert [near.get(f"k{n}") is not None for n in range(5)] == [False, False, True, True, True]


def test_ttl_zero_keeps_nothing() -> None:
    near = live_cache(Clock(), ttl_seconds=0)
    near.put("a", metadata(1), near.generation)
    assert near.get("a") is None
