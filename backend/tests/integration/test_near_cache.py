"""Each process's near copy of cached metadata, on real Redis servers (ADR 0011).

What a client would notice: a warm entry is served without asking Redis, a change announced by any
process reaches every copy within moments, and a copy that can no longer hear announcements is
not used at all. Outages use a private `redis-server` that the test kills, pauses and restarts.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from app.services.cache import Metadata
from app.services.near_cache import DEAD_AFTER_SECONDS
from tests.api.near_copies import holds, process_cache
from tests.api.waiting import wait_until

if TYPE_CHECKING:
    from tests.redis_fixtures import RedisServer

METADATA = {
    "id": "4a7e0c2d-0000-4000-8000-000000000002",
    "filename": "kitten.jpg",
    "thumbnail_ready": True,
    "storage_key": "originals/4a/kitten.jpg",
}
# Announcements cross one loopback connection; a generous bound that still says "moments".
ANNOUNCEMENT_DEADLINE_SECONDS = 2.0
# Time for a silent channel to be declared dead, plus the same margin.
DROPPED_WITHIN_SECONDS = DEAD_AFTER_SECONDS + ANNOUNCEMENT_DEADLINE_SECONDS


async def test_warm_entry_is_served_from_memory_until_another_process_announces_a_change(
    redis_url: str, raw_redis: Redis
) -> None:
    image_id = uuid.uuid4()
    async with process_cache(redis_url) as first, process_cache(redis_url) as second:
        await first.set(image_id, METADATA)
        assert await first.get(image_id) == (Metadata.of(METADATA), "HIT")  # read from Redis, kept

        # Removed behind the cache's back (no announcement): the near copy still answers.
        await raw_redis.delete(first.key(image_id))
        assert await first.get(image_id) == (Metadata.of(METADATA), "HIT")

        await second.invalidate(image_id)  # another process deletes the image

        async def dropped() -> bool:
            return await first.get(image_id) == (None, "MISS")

        await wait_until(
            dropped, what="the announcement to reach the first process", within=ANNOUNCEMENT_DEADLINE_SECONDS
        )


async def test_own_invalidation_drops_the_near_copy_at_once(redis_url: str) -> None:
    image_id = uuid.uuid4()
    async with process_cache(redis_url) as cache:
        await cache.set(image_id, METADATA)
        assert (await cache.get(image_id))[1] == "HIT"
        await cache.invalidate(image_id)
        assert await cache.get(image_id) == (None, "MISS")  # no waiting for its own announcement


async def test_near_ttl_zero_asks_redis_every_time(redis_url: str, raw_redis: Redis) -> None:
    image_id = uuid.uuid4()
    async with process_cache(redis_url, near_ttl_seconds=0) as cache:
        await cache.set(image_id, METADATA)
        assert (await cache.get(image_id))[1] == "HIT"
        await raw_redis.delete(cache.key(image_id))
        assert await cache.get(image_id) == (None, "MISS")


async def test_near_copy_is_dropped_when_redis_dies_and_used_again_once_it_returns(
    throwaway_redis: RedisServer,
) -> None:
    image_id = uuid.uuid4()
    async with process_cache(throwaway_redis.url) as cache:
        await cache.set(image_id, METADATA)
        assert (await cache.get(image_id))[1] == "HIT"

        await throwaway_redis.kill()

        async def not_served() -> bool:
            return await cache.get(image_id) == (None, "MISS")

        await wait_until(not_served, what="the near copy to be dropped", within=DROPPED_WITHIN_SECONDS)
        assert not cache.near.live

        await throwaway_redis.start()  # same port, empty
        await wait_until(lambda: holds(cache.near.live), what="the channel to be subscribed again", within=10.0)

        async def cached_again() -> bool:
            await cache.set(image_id, METADATA)  # skipped until the breaker lets a call through
            return await cache.get(image_id) == (Metadata.of(METADATA), "HIT")

        await wait_until(cached_again, what="Redis to be used again")
        assert cache.near.get(str(image_id)) == Metadata.of(METADATA)  # kept near again


async def test_near_copy_is_dropped_when_redis_hangs(throwaway_redis: RedisServer) -> None:
    """A hung server breaks no connection: only the unanswered pings tell the listener to stop trusting."""
    image_id = uuid.uuid4()
    async with process_cache(throwaway_redis.url) as cache:
        await cache.set(image_id, METADATA)
        assert (await cache.get(image_id))[1] == "HIT"
        throwaway_redis.pause()
        try:
            await wait_until(
                lambda: holds(not cache.near.live),
                what="the silent channel to be given up",
                within=DROPPED_WITHIN_SECONDS,
            )
            assert cache.near.get(str(image_id)) is None
        finally:
            throwaway_redis.resume()
