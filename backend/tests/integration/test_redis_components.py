"""The Redis-backed components on real Redis servers: metadata cache, rate limiter, and upload slots.

Fail-open behaviour is tested against a private `redis-server` that the test kills, pauses and
starts again on the same port; nothing is mocked.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, TypeVar

import anyio
import pytest
from redis.asyncio import Redis

from app.errors import ServiceUnavailable
from app.services.cache import Metadata, MetadataCache
from app.services.concurrency import UploadSlots
from app.services.rate_limit import RateLimiter
from app.services.redis_client import RedisHandle

if TYPE_CHECKING:
    # Only for annotations: importing it for real before pytest_plugins loads it defeats assertion rewriting.
    from tests.redis_fixtures import RedisServer


T = TypeVar("T")

COOLDOWN_SECONDS = 0.2
# A dead or hung Redis may cost one socket timeout (0.5 s) per call, never more.
MAX_DEGRADED_CALL_SECONDS = 0.9
METADATA = {
    "id": "3f2b8c1e-0000-4000-8000-000000000001",
    "original_filename": "cat.jpg",
    "size_bytes": 1234,
    "width": 640,
    "height": 480,
    "thumbnail_ready": False,
    "owner_id": None,
    "tags": ["a", "b"],
    "storage_key": "originals/ab/cat.jpg",
}


async def elapsed(call: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    started = time.monotonic()
    result = await call()
    return result, time.monotonic() - started


async def wait_for_breaker_cooldown() -> None:
    await anyio.sleep(COOLDOWN_SECONDS + 0.05)


@pytest.fixture
async def handle(redis_url: str) -> AsyncIterator[RedisHandle]:
    redis = RedisHandle(redis_url, cooldown_seconds=COOLDOWN_SECONDS)
    yield redis
    await redis.close()


# --- metadata cache -------------------------------------------------------------------------------


async def test_cache_miss_then_set_then_hit_returns_exactly_what_was_set(handle: RedisHandle) -> None:
    cache = MetadataCache(handle, key_prefix="chitram:", ttl_seconds=60)
    image_id = uuid.uuid4()

    assert await cache.get(image_id) == (None, "MISS")
    await cache.set(image_id, METADATA)

    assert await cache.get(image_id) == (Metadata.of(METADATA), "HIT")
    assert await cache.get(str(image_id)) == (Metadata.of(METADATA), "HIT")


async def test_cache_stores_plain_json_under_prefixed_key_with_ttl(handle: RedisHandle, raw_redis: Redis) -> None:
    cache = MetadataCache(handle, key_prefix="chitram:", ttl_seconds=120)
    image_id = uuid.uuid4()

    await cache.set(image_id, METADATA)

    key = f"chitram:image:{image_id}"
    assert cache.key(image_id) == key
    assert await raw_redis.get(key) == (
        b'{"id":"3f2b8c1e-0000-4000-8000-000000000001","original_filename":"cat.jpg","size_bytes":1234,'
        b'"width":640,"height":480,"thumbnail_ready":false,"owner_id":null,"tags":["a","b"],'
        b'"storage_key":"originals/ab/cat.jpg"}'
    )
    assert 0 < await raw_redis.ttl(key) <= 120


async def test_cache_invalidate_forgets_the_entry(handle: RedisHandle, raw_redis: Redis) -> None:
    cache = MetadataCache(handle, ttl_seconds=60)
    kept, dropped = uuid.uuid4(), uuid.uuid4()
    await cache.set(kept, METADATA)
    await cache.set(dropped, METADATA)

    await cache.invalidate(dropped)

    assert await cache.get(dropped) == (None, "MISS")
    assert await cache.get(kept) == (Metadata.of(METADATA), "HIT")
    assert await raw_redis.exists(cache.key(dropped)) == 0


async def test_a_fill_after_another_process_invalidated_the_image_is_refused(
    handle: RedisHandle, redis_url: str, raw_redis: Redis
) -> None:
    """A read that missed, then loaded the row just before another process deleted the image, must not
    put the deleted image back into Redis after the delete's invalidation."""
    reader = MetadataCache(handle, ttl_seconds=60)
    deleter_handle = RedisHandle(redis_url)
    deleter = MetadataCache(deleter_handle, ttl_seconds=60)
    try:
        raced, calm = uuid.uuid4(), uuid.uuid4()
        raced_miss, calm_miss = await reader.lookup(raced), await reader.lookup(calm)
        assert (raced_miss.status, raced_miss.stamp, calm_miss.stamp) == ("MISS", b"", b"")

        await deleter.invalidate(raced)  # the delete commits and invalidates between the read and its fill

        assert await reader.fill(raced, METADATA, raced_miss.stamp) is False
        assert await reader.get(raced) == (None, "MISS")
        assert await raw_redis.exists(reader.key(raced)) == 0
        assert await reader.fill(calm, METADATA, calm_miss.stamp) is True
        assert await reader.get(calm) == (Metadata.of(METADATA), "HIT")

        # A miss after the invalidation reads the new stamp and may fill again (a visibility change, say).
        again = await reader.lookup(raced)
        assert again.stamp not in (None, b"")
        assert await reader.fill(raced, METADATA, again.stamp or b"") is True
        assert await reader.get(raced) == (Metadata.of(METADATA), "HIT")
        assert 0 < await raw_redis.ttl(reader.stamp_key(raced)) <= 600
    finally:
        await deleter_handle.close()


async def test_cache_treats_an_unreadable_entry_as_a_miss_and_drops_it(handle: RedisHandle, raw_redis: Redis) -> None:
    cache = MetadataCache(handle, ttl_seconds=60)
    image_id = uuid.uuid4()
    await raw_redis.set(cache.key(image_id), b"\x80not json")

    assert await cache.get(image_id) == (None, "MISS")
    assert await raw_redis.exists(cache.key(image_id)) == 0


async def test_cache_without_redis_reports_disabled_and_does_nothing() -> None:
    redis = RedisHandle(None)
    cache = MetadataCache(redis, ttl_seconds=60)
    image_id = uuid.uuid4()

    await cache.set(image_id, METADATA)
    await cache.invalidate(image_id)

    assert await cache.get(image_id) == (None, "DISABLED")
    assert redis.state() == "disabled"
    assert await redis.ping() is False


async def test_cache_fails_open_when_redis_dies_and_is_used_again_when_it_returns(
    throwaway_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisHandle(throwaway_redis.url, cooldown_seconds=COOLDOWN_SECONDS)
    cache = MetadataCache(redis, ttl_seconds=60)
    image_id = uuid.uuid4()
    try:
        await cache.set(image_id, METADATA)
        assert await cache.get(image_id) == (Metadata.of(METADATA), "HIT")

        await throwaway_redis.kill()
        caplog.clear()
        caplog.set_level(logging.INFO, logger="app.services.redis_client")
        for _ in range(5):
            result, seconds = await elapsed(lambda: cache.get(image_id))
            assert result == (None, "MISS")
            assert seconds < MAX_DEGRADED_CALL_SECONDS
            await cache.set(image_id, METADATA)
            await cache.invalidate(image_id)
            await anyio.sleep(COOLDOWN_SECONDS / 2)  # so later rounds probe the dead server again
        assert redis.state() == "disconnected"
        assert await redis.ping() is False
        outage_lines = [record for record in caplog.records if "unreachable" in record.getMessage()]
        assert len(outage_lines) == 1
        assert outage_lines[0].levelname == "WARNING"

        await throwaway_redis.start()
        await wait_for_breaker_cooldown()
        await cache.set(image_id, METADATA)
        assert await cache.get(image_id) == (Metadata.of(METADATA), "HIT")
        assert redis.state() == "connected"
        assert any("reachable again" in record.getMessage() for record in caplog.records)
    finally:
        await redis.close()


async def test_cache_call_is_bounded_when_redis_hangs(throwaway_redis: RedisServer) -> None:
    redis = RedisHandle(throwaway_redis.url, cooldown_seconds=COOLDOWN_SECONDS)
    cache = MetadataCache(redis, ttl_seconds=60)
    image_id = uuid.uuid4()
    try:
        await cache.set(image_id, METADATA)
        throwaway_redis.pause()
        try:
            result, seconds = await elapsed(lambda: cache.get(image_id))
            assert result == (None, "MISS")
            assert seconds < MAX_DEGRADED_CALL_SECONDS
            # Within the cool-down Redis is skipped entirely: no timeout to pay at all.
            result, seconds = await elapsed(lambda: cache.get(image_id))
            assert result == (None, "MISS")
            assert seconds < 0.05
        finally:
            throwaway_redis.resume()
    finally:
        await redis.close()


async def test_cache_applies_an_invalidation_missed_during_an_outage_once_redis_answers(
    throwaway_redis: RedisServer,
) -> None:
    redis = RedisHandle(throwaway_redis.url, cooldown_seconds=COOLDOWN_SECONDS)
    cache = MetadataCache(redis, ttl_seconds=60)
    image_id = uuid.uuid4()
    try:
        await cache.set(image_id, METADATA)
        throwaway_redis.pause()  # the entry survives in the paused server, as in a network partition
        try:
            assert await cache.get(image_id) == (None, "MISS")
            assert redis.state() == "disconnected"
            # Skipped by the breaker, so no DEL reaches the server's socket buffer to run on resume.
            await cache.invalidate(image_id)
        finally:
            throwaway_redis.resume()
        await wait_for_breaker_cooldown()

        assert await cache.get(image_id) == (None, "MISS")
    finally:
        await redis.close()


async def test_redis_handle_ping_reports_connected_and_disconnected(throwaway_redis: RedisServer) -> None:
    redis = RedisHandle(throwaway_redis.url)
    try:
        assert await redis.ping() is True
        assert redis.state() == "connected"
        await throwaway_redis.kill()
        assert await redis.ping() is False
        assert redis.state() == "disconnected"
    finally:
        await redis.close()


# --- rate limiter ---------------------------------------------------------------------------------


@pytest.fixture(params=["redis", "memory"])
async def limiter(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[RateLimiter]:
    rate_limiter = RateLimiter(redis_url if request.param == "redis" else None, cooldown_seconds=COOLDOWN_SECONDS)
    assert rate_limiter.state() == request.param
    yield rate_limiter
    await rate_limiter.reset()
    await rate_limiter.close()


async def test_limiter_allows_the_limit_then_refuses_with_retry_after(limiter: RateLimiter) -> None:
    results = [await limiter.hit("upload", "203.0.113.7", 3) for _ in range(4)]

    assert [result.allowed for result in results] == [True, True, True, False]
    assert [result.remaining for result in results] == [2, 1, 0, 0]
    assert all(result.limit == 3 for result in results)
    refused = results[-1]
    assert 1 <= refused.retry_after_seconds <= 60
    assert 1 <= refused.reset_seconds <= 60
    assert refused.headers() == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": str(refused.reset_seconds),
        "Retry-After": str(refused.retry_after_seconds),
    }
    assert "Retry-After" not in results[0].headers()
    assert results[0].retry_after_seconds == 0


async def test_limiter_window_slides_instead_of_resetting(limiter: RateLimiter) -> None:
    # window 4 s, limit 3: two hits at t=0, one at t=2. At t=4.5 a fixed window would have reset
    # (3 more allowed); a sliding one still counts the t=2 hit, so only 2 pass. Margins of half a
    # second and more keep this true on a loaded machine.
    async def hit() -> bool:
        return (await limiter.hit("login", "alice", 3, window_seconds=4)).allowed

    assert [await hit(), await hit()] == [True, True]
    await anyio.sleep(2.0)
    assert [await hit(), await hit()] == [True, False]
    await anyio.sleep(2.5)
    assert [await hit(), await hit(), await hit()] == [True, True, False]


async def test_limiter_counts_keys_and_scopes_independently(limiter: RateLimiter) -> None:
    assert (await limiter.hit("upload", "203.0.113.7", 1)).allowed
    assert not (await limiter.hit("upload", "203.0.113.7", 1)).allowed

    assert (await limiter.hit("upload", "203.0.113.8", 1)).allowed
    assert (await limiter.hit("login", "203.0.113.7", 1)).allowed


async def test_limiter_reset_forgets_counts(limiter: RateLimiter) -> None:
    await limiter.hit("upload", "203.0.113.7", 1)
    await limiter.reset()
    assert (await limiter.hit("upload", "203.0.113.7", 1)).allowed


async def test_two_limiters_share_counts_through_redis(redis_url: str, raw_redis: Redis) -> None:
    # Two instances with their own connection pools stand for two worker processes.
    first, second = RateLimiter(redis_url), RateLimiter(redis_url)
    try:
        assert (await first.hit("upload", "203.0.113.7", 3)).remaining == 2
        assert (await second.hit("upload", "203.0.113.7", 3)).remaining == 1
        assert (await first.hit("upload", "203.0.113.7", 3)).remaining == 0
        refused = await second.hit("upload", "203.0.113.7", 3)
        assert not refused.allowed
        assert refused.retry_after_seconds >= 1
        assert await raw_redis.keys("chitram:ratelimit:*") == [b"chitram:ratelimit:upload/203.0.113.7/3/60/second"]
    finally:
        await first.close()
        await second.close()


async def test_limiter_shares_a_redis_handle_with_the_cache(handle: RedisHandle, raw_redis: Redis) -> None:
    limiter = RateLimiter(handle)
    await limiter.hit("upload", "203.0.113.7", 3)
    await limiter.close()  # does not close a handle it was given

    assert await handle.ping() is True
    assert await raw_redis.exists("chitram:ratelimit:upload/203.0.113.7/3/60/second") == 1


async def test_limiter_falls_back_to_memory_while_redis_is_down_and_returns_to_it(
    throwaway_redis: RedisServer,
) -> None:
    limiter = RateLimiter(throwaway_redis.url, cooldown_seconds=COOLDOWN_SECONDS)
    try:
        assert (await limiter.hit("upload", "203.0.113.7", 2)).remaining == 1
        assert limiter.state() == "redis"

        await throwaway_redis.kill()
        fallback_results = []
        for _ in range(3):
            result, seconds = await elapsed(lambda: limiter.hit("upload", "203.0.113.7", 2))
            assert seconds < MAX_DEGRADED_CALL_SECONDS
            fallback_results.append(result.allowed)
        # The in-process window still limits: 2 pass, the third is refused.
        assert fallback_results == [True, True, False]
        assert limiter.state() == "memory-fallback"

        await throwaway_redis.start()  # a fresh, empty server: its scripts must be loaded again
        await wait_for_breaker_cooldown()
        result = await limiter.hit("upload", "203.0.113.7", 2)
        assert limiter.state() == "redis"
        assert (result.allowed, result.remaining) == (True, 1)
        client = Redis.from_url(throwaway_redis.url)
        try:
            assert await client.exists("chitram:ratelimit:upload/203.0.113.7/2/60/second") == 1
        finally:
            await client.aclose()
    finally:
        await limiter.close()


async def test_admission_decides_at_once_and_its_figures_follow(redis_url: str) -> None:
    limiter = RateLimiter(redis_url)
    try:
        first = await limiter.admit("upload", "203.0.113.9", 2)
        assert first.allowed
        assert (await first.result()).remaining == 1
        # The figures are the window's as they are read, so they count every hit made by then.
        second, third = [await limiter.admit("upload", "203.0.113.9", 2) for _ in range(2)]
        assert (second.allowed, third.allowed) == (True, False)
        assert (await second.result()).remaining == 0
        refused = await third.result()
        assert (refused.remaining, refused.allowed) == (0, False)
        assert refused.retry_after_seconds >= 1
    finally:
        await limiter.reset()
        await limiter.close()


async def test_admission_figures_fall_back_to_memory_if_redis_fails_after_the_hit(redis_url: str) -> None:
    limiter = RateLimiter(redis_url, cooldown_seconds=COOLDOWN_SECONDS)
    try:
        admission = await limiter.admit("upload", "203.0.113.10", 2)
        # Redis cannot be made to die in the instant between the two round trips, so the breaker is
        # opened by hand before the figures' call runs (it runs at the next turn of the event loop).
        limiter.redis.breaker.record_failure(ConnectionError("test: Redis gone after the hit"))
        result = await admission.result()
        assert result.allowed
        assert result.remaining == 2  # this process's window, which counted nothing during the Redis time
        assert limiter.state() == "memory-fallback"

        await wait_for_breaker_cooldown()
        first, refused = [await limiter.admit("upload", "203.0.113.11", 1) for _ in range(2)]
        assert (first.allowed, refused.allowed) == (True, False)
        limiter.redis.breaker.record_failure(ConnectionError("test: Redis gone after the hit"))
        refusal = await refused.result()
        # The fallback window counted nothing, but a refusal still says nothing is left.
        assert (refusal.allowed, refusal.remaining) == (False, 0)
        assert refusal.retry_after_seconds >= 1
        await first.result()
    finally:
        await limiter.close()


# --- upload slots ---------------------------------------------------------------------------------


async def test_upload_slots_turn_away_a_third_upload_with_503_and_retry_after() -> None:
    slots = UploadSlots(limit=2, timeout_seconds=0.2)
    async with slots.acquire(), slots.acquire():
        assert slots.in_use == 2
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable) as refused:
            async with slots.acquire():
                pytest.fail("a third slot was granted")
        assert 0.15 < time.monotonic() - started < 1.0

    error = refused.value
    assert (error.status_code, error.code) == (503, "SERVICE_UNAVAILABLE")
    assert error.headers == {"Retry-After": "1"}
    assert "busy" in error.message
    assert slots.in_use == 0
    assert slots.limit == 2


async def test_upload_slot_is_freed_on_release_and_on_error() -> None:
    slots = UploadSlots(limit=1, timeout_seconds=0.2)
    async with slots.acquire():
        pass
    with pytest.raises(RuntimeError, match="upload failed"):
        async with slots.acquire():
            raise RuntimeError("upload failed")

    assert slots.in_use == 0
    async with slots.acquire():
        assert slots.in_use == 1


async def test_upload_slot_waiter_gets_the_slot_freed_by_another_upload() -> None:
    slots = UploadSlots(limit=1, timeout_seconds=2)
    got_slot = anyio.Event()

    async def second_upload() -> None:
        async with slots.acquire():
            got_slot.set()

    async with anyio.create_task_group() as tasks:
        async with slots.acquire():
            tasks.start_soon(second_upload)
            await wait_until(lambda: slots.waiting == 1)
        with anyio.fail_after(1):
            await got_slot.wait()
    assert slots.in_use == 0


async def test_cancelled_upload_waiter_does_not_leak_a_slot() -> None:
    slots = UploadSlots(limit=2, timeout_seconds=5)
    async with AsyncExitStack() as held:
        await held.enter_async_context(slots.acquire())
        second = slots.acquire()
        await second.__aenter__()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(hold_a_slot, slots)
            await wait_until(lambda: slots.waiting == 1)
            # Release and cancel in the same step: the slot is handed to the waiter just as it goes
            # away (a client disconnecting), the race most likely to lose a slot.
            await second.__aexit__(None, None, None)
            tasks.cancel_scope.cancel()

        assert slots.in_use == 1
        assert slots.waiting == 0
    assert slots.in_use == 0
    async with slots.acquire(), slots.acquire():
        assert slots.in_use == 2


async def hold_a_slot(slots: UploadSlots) -> None:
    async with slots.acquire():
        await anyio.sleep_forever()


async def wait_until(condition: Callable[[], bool]) -> None:
    # Polling is the only way to observe a semaphore's queue from outside; bounded by fail_after.
    with anyio.fail_after(2):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.005)
