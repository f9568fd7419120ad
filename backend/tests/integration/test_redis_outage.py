"""Redis dies mid-run and comes back: the app keeps serving without it and uses it again, without a restart.

The app talks to a private `redis-server` that the test kills (or pauses) and starts again on the
same port; nothing is mocked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.config import Settings
from app.services.near_cache import DEAD_AFTER_SECONDS
from tests.api.apps import run_thumbnail_job, running_app, without_workers
from tests.api.waiting import wait_until
from tests.factories import make_jpeg, token_of, upload, upload_ok

if TYPE_CHECKING:
    # Only for annotations: importing it for real before pytest_plugins loads it defeats assertion rewriting.
    from tests.redis_fixtures import RedisServer

# The app's breaker skips Redis for 1 s after a failure; give the recovery a generous deadline.
RECOVERY_DEADLINE_SECONDS = 10.0
# Each process's near copy of the cache is dropped once its invalidation channel is lost: at once
# when the connection breaks, within DEAD_AFTER_SECONDS of silence when Redis hangs (ADR 0011).
NEAR_COPY_DROPPED_WITHIN_SECONDS = DEAD_AFTER_SECONDS + 1.0


@pytest.fixture
async def app_on_throwaway_redis(
    settings: Settings, throwaway_redis: RedisServer
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    # Without workers the test runs each thumbnail job itself, so no late thumbnail blurs X-Cache.
    update = {"redis_url": throwaway_redis.url, "rate_limit_per_minute": 100}
    async with running_app(without_workers(settings).model_copy(update=update)) as running:
        yield running


async def ready_image(app: FastAPI, client: httpx.AsyncClient) -> dict[str, Any]:
    created = await upload_ok(client, make_jpeg())
    await run_thumbnail_job(app, created["id"])
    return created


async def cache_status(client: httpx.AsyncClient, image_id: str) -> str:
    response = await client.get(f"/api/v1/images/{image_id}")
    assert response.status_code == 200, response.text
    assert response.json()["thumbnail_ready"] is True
    status: str = response.headers["X-Cache"]
    return status


async def health(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/health")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_service_keeps_working_while_redis_is_down_and_uses_it_again_when_it_returns(
    app_on_throwaway_redis: tuple[FastAPI, httpx.AsyncClient], throwaway_redis: RedisServer
) -> None:
    app, client = app_on_throwaway_redis
    created = await ready_image(app, client)
    assert await cache_status(client, created["id"]) == "MISS"
    assert await cache_status(client, created["id"]) == "HIT"
    assert (await health(client))["rate_limiter"] == "redis"

    await throwaway_redis.kill()

    async def served_from_the_database() -> bool:
        return await cache_status(client, created["id"]) == "MISS"

    await wait_until(
        served_from_the_database, what="the near copy to be dropped", within=NEAR_COPY_DROPPED_WITHIN_SECONDS
    )
    for _ in range(3):
        assert await cache_status(client, created["id"]) == "MISS"
    during = await upload(client, make_jpeg())
    assert during.status_code == 201, during.text  # the limiter fell back to memory
    assert int(during.headers["RateLimit-Remaining"]) >= 0
    report = await health(client)
    assert (report["status"], report["cache"], report["rate_limiter"]) == (
        "degraded",
        "disconnected",
        "memory-fallback",
    )
    assert (report["database"], report["storage"]) == ("connected", "connected")

    await throwaway_redis.start()  # same port, empty

    async def cache_used_again() -> bool:
        return await cache_status(client, created["id"]) == "HIT"

    await wait_until(cache_used_again, what="X-Cache: HIT after Redis came back", within=RECOVERY_DEADLINE_SECONDS)
    report = await health(client)
    assert (report["status"], report["cache"], report["rate_limiter"]) == ("healthy", "connected", "redis")

    # Rate limits count in Redis again, where every process shares them.
    after = await upload(client, make_jpeg())
    assert after.status_code == 201
    raw = Redis.from_url(throwaway_redis.url)
    try:
        assert await raw.keys("chitram:ratelimit*")
        assert await raw.exists(f"chitram:image:{created['id']}") == 1
    finally:
        await raw.aclose()


async def test_image_deleted_while_redis_hangs_is_not_served_from_the_cache_afterwards(
    app_on_throwaway_redis: tuple[FastAPI, httpx.AsyncClient], throwaway_redis: RedisServer
) -> None:
    app, client = app_on_throwaway_redis
    created = await ready_image(app, client)
    await cache_status(client, created["id"])
    assert await cache_status(client, created["id"]) == "HIT"

    # A hung server keeps its data (unlike a killed one): the stale entry is still there afterwards.
    throwaway_redis.pause()
    try:

        async def redis_skipped() -> bool:
            return await cache_status(client, created["id"]) == "MISS"

        await wait_until(redis_skipped, what="the near copy to be dropped", within=NEAR_COPY_DROPPED_WITHIN_SECONDS)
        deleted = await client.delete(f"/api/v1/images/{created['id']}", headers=token_of(created))
        assert deleted.status_code == 204
        assert (await client.get(f"/api/v1/images/{created['id']}")).status_code == 404
        assert (await health(client))["status"] == "degraded"
        ready = await client.get("/readyz")  # still ready: the cache and shared limits fail open
        assert (ready.status_code, ready.json()["status"], ready.json()["cache"]) == (200, "degraded", "disconnected")
    finally:
        throwaway_redis.resume()

    async def redis_used_again() -> bool:
        return bool((await health(client))["cache"] == "connected")

    await wait_until(redis_used_again, what="Redis to be used again", within=RECOVERY_DEADLINE_SECONDS)
    other = await ready_image(app, client)

    async def cache_used_again() -> bool:
        return await cache_status(client, other["id"]) == "HIT"

    await wait_until(cache_used_again, what="the cache to be used again", within=RECOVERY_DEADLINE_SECONDS)
    for _ in range(2):
        gone = await client.get(f"/api/v1/images/{created['id']}")
        assert gone.status_code == 404
        assert gone.json()["detail"]["code"] == "IMAGE_NOT_FOUND"
    raw = Redis.from_url(throwaway_redis.url)
    try:
        assert await raw.exists(f"chitram:image:{created['id']}") == 0
    finally:
        await raw.aclose()
