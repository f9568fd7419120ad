"""Cache-aside metadata in Redis, seen over HTTP: X-Cache, the key and its TTL, what is (not) cached, invalidation."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.config import Settings
from app.services.cache import MetadataCache
from app.services.content_store import original_key
from tests.api.apps import run_thumbnail_job, running_app, without_workers
from tests.api.near_copies import comparable, count_routed
from tests.api.waiting import wait_until
from tests.conftest import TEST_CLIENT_ADDRESS
from tests.factories import bearer, make_jpeg, register, token_of, upload, upload_ok


def metadata_url(image_id: str) -> str:
    return f"/api/v1/images/{image_id}"


def cache_key(image_id: str) -> str:
    return f"chitram:image:{image_id}"


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An API process without thumbnail workers: the test runs each job itself, so it knows when the
    job has settled the row (with background workers it may land after any later GET)."""
    async with running_app(without_workers(settings)) as running:
        yield running


async def upload_with_thumbnail(app: FastAPI, client: httpx.AsyncClient, **kwargs: Any) -> dict[str, Any]:
    response = await upload(client, make_jpeg(), **kwargs)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    await run_thumbnail_job(app, created["id"])
    return created


async def test_metadata_is_a_miss_then_a_hit_once_the_thumbnail_is_ready(
    api: tuple[FastAPI, httpx.AsyncClient], raw_redis: Redis, settings: Settings
) -> None:
    app, client = api
    created = await upload_ok(client)
    for _ in range(2):  # pending changes in moments: never cached
        pending = await client.get(metadata_url(created["id"]))
        assert (pending.headers["X-Cache"], pending.json()["thumbnail_status"]) == ("MISS", "pending")
    assert await raw_redis.exists(cache_key(created["id"])) == 0

    await run_thumbnail_job(app, created["id"])
    miss = await client.get(metadata_url(created["id"]))
    assert miss.status_code == 200
    assert (miss.headers["X-Cache"], miss.json()["thumbnail_ready"]) == ("MISS", True)
    hit = await client.get(metadata_url(created["id"]))
    assert hit.status_code == 200
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.json() == miss.json()

    key = cache_key(created["id"])
    stored = await raw_redis.get(key)
    assert stored is not None
    # Redis holds what the API sends, and where the original is stored (never sent).
    assert json.loads(stored) == {**miss.json(), "storage_key": original_key(created["checksum"], "image/jpeg")}
    ttl = await raw_redis.ttl(key)
    assert 0 < ttl <= settings.cache_ttl_seconds
    assert ttl > settings.cache_ttl_seconds - 60  # set from CACHE_TTL_SECONDS, not some other default


async def test_metadata_uses_the_configured_ttl(settings: Settings, raw_redis: Redis) -> None:
    async with running_app(without_workers(settings).model_copy(update={"cache_ttl_seconds": 42})) as (app, client):
        created = await upload_with_thumbnail(app, client)
        assert (await client.get(metadata_url(created["id"]))).headers["X-Cache"] == "MISS"
        assert (await client.get(metadata_url(created["id"]))).headers["X-Cache"] == "HIT"
        assert 0 < await raw_redis.ttl(cache_key(created["id"])) <= 42


async def test_cached_metadata_holds_no_secrets(api: tuple[FastAPI, httpx.AsyncClient], raw_redis: Redis) -> None:
    app, client = api
    account = await register(client, "cached-owner@example.com")
    owned = await upload_with_thumbnail(app, client, headers=bearer(account["access_token"]))
    anonymous = await upload_with_thumbnail(app, client)
    stored = b""
    for image_id in (owned["id"], anonymous["id"]):
        await client.get(metadata_url(image_id))
        assert (await client.get(metadata_url(image_id))).headers["X-Cache"] == "HIT"
        value = await raw_redis.get(cache_key(image_id))
        assert isinstance(value, bytes)
        stored += value

    token_hash = hashlib.sha256(anonymous["delete_token"].encode()).hexdigest()
    for secret in ("cached-owner@example.com", account["user"]["id"], TEST_CLIENT_ADDRESS[0], token_hash):
        assert secret.encode() not in stored
    for field in (b"delete_token", b"upload_ip", b"owner", b"email"):
        assert field not in stored


async def test_where_the_original_is_stored_travels_in_the_cache_but_never_to_clients(
    api: tuple[FastAPI, httpx.AsyncClient], raw_redis: Redis
) -> None:
    """Serving a direct link from the cache needs the storage key; the API's answer leaves it out."""
    app, client = api
    created = await upload_with_thumbnail(app, client)
    answers = [await client.get(metadata_url(created["id"])) for _ in range(3)]  # MISS, HIT, near HIT
    assert [answer.headers["X-Cache"] for answer in answers] == ["MISS", "HIT", "HIT"]
    assert all(answer.json() == answers[0].json() for answer in answers)
    assert all("storage_key" not in answer.json() for answer in answers)
    cached = await raw_redis.get(cache_key(created["id"]))
    assert isinstance(cached, bytes)
    assert b'"storage_key":"originals/' in cached
    assert (await client.get(created["url"])).status_code == 200


async def test_delete_invalidates_the_cached_metadata(api: tuple[FastAPI, httpx.AsyncClient], raw_redis: Redis) -> None:
    app, client = api
    created = await upload_with_thumbnail(app, client)
    await client.get(metadata_url(created["id"]))
    assert (await client.get(metadata_url(created["id"]))).headers["X-Cache"] == "HIT"
    assert await raw_redis.exists(cache_key(created["id"])) == 1

    deleted = await client.delete(metadata_url(created["id"]), headers=token_of(created))
    assert deleted.status_code == 204
    assert await raw_redis.exists(cache_key(created["id"])) == 0
    gone = await client.get(metadata_url(created["id"]))
    assert gone.status_code == 404
    assert gone.json()["detail"]["code"] == "IMAGE_NOT_FOUND"
    assert await raw_redis.exists(cache_key(created["id"])) == 0


async def test_delete_through_another_process_invalidates_for_every_process(
    api: tuple[FastAPI, httpx.AsyncClient], settings: Settings
) -> None:
    app, client = api
    created = await upload_with_thumbnail(app, client)
    await client.get(metadata_url(created["id"]))
    assert (await client.get(metadata_url(created["id"]))).headers["X-Cache"] == "HIT"

    async with running_app(without_workers(settings), empty_tables_on_exit=False) as (_other, other_client):
        deleted = await other_client.delete(metadata_url(created["id"]), headers=token_of(created))
        assert deleted.status_code == 204

    # The first process drops its near copy when the announcement arrives, moments later (ADR 0011).
    async def gone_here_too() -> bool:
        return (await client.get(metadata_url(created["id"]))).status_code == 404

    await wait_until(gone_here_too, what="the deleted image to be 404 in the first process", within=2.0)
    response = await client.get(metadata_url(created["id"]))
    assert (response.status_code, response.json()["detail"]["code"]) == (404, "IMAGE_NOT_FOUND")


async def test_reads_racing_a_delete_never_put_the_deleted_image_back_into_the_cache(
    settings: Settings, raw_redis: Redis
) -> None:
    """Reads that missed and loaded the row just before a delete committed fill the cache after the
    delete's invalidation: without the fill stamp that put the deleted image back for a whole TTL
    (found by the scale-out scenario: a quarter of such images stayed served)."""
    plain = without_workers(settings).model_copy(update={"cache_near_ttl_seconds": 0})
    async with running_app(plain) as (app, client), running_app(plain, empty_tables_on_exit=False) as (_, other):
        images = [await upload_with_thumbnail(app, client) for _ in range(24)]

        async def race(created: dict[str, Any]) -> int:
            url = metadata_url(created["id"])
            answers = await asyncio.gather(
                *(reader.get(url) for reader in (client, other, client, other, client, other)),
                client.delete(url, headers=token_of(created)),
            )
            return answers[-1].status_code

        assert await asyncio.gather(*(race(created) for created in images)) == [204] * len(images)
        for created in images:
            for reader in (client, other):
                response = await reader.get(metadata_url(created["id"]))
                assert response.status_code == 404, (created["id"], response.headers.get("X-Cache"))
            assert await raw_redis.exists(cache_key(created["id"])) == 0


async def test_a_pending_entry_in_redis_is_never_served_and_the_ready_metadata_replaces_it(
    settings: Settings, raw_redis: Redis
) -> None:
    """Pending metadata is never cached by `set`; one written by anything else (an older release, a
    hand edit) is dropped on read, so thumbnail jobs need not invalidate anything when they finish."""
    async with running_app(without_workers(settings)) as (api, client):
        created = await upload_ok(client)
        pending = (await client.get(metadata_url(created["id"]))).json()
        assert pending["thumbnail_status"] == "pending"
        cache: MetadataCache = api.state.cache
        await cache.set(uuid.UUID(created["id"]), pending)
        assert await raw_redis.exists(cache_key(created["id"])) == 0

        await raw_redis.set(cache_key(created["id"]), json.dumps(pending))
        read = await client.get(metadata_url(created["id"]))
        assert (read.headers["X-Cache"], read.json()["thumbnail_status"]) == ("MISS", "pending")
        assert await raw_redis.exists(cache_key(created["id"])) == 0

        # Written again, and the thumbnail made: the job invalidates nothing, yet the entry is not served.
        await raw_redis.set(cache_key(created["id"]), json.dumps(pending))
        await run_thumbnail_job(api, created["id"])
        fresh = await client.get(metadata_url(created["id"]))
        assert fresh.headers["X-Cache"] == "MISS"
        assert fresh.json()["thumbnail_ready"] is True
        assert fresh.json()["thumbnail_url"] == f"/api/v1/images/{created['id']}/thumbnail"
        again = await client.get(metadata_url(created["id"]))
        assert (again.headers["X-Cache"], again.json()) == ("HIT", fresh.json())


async def test_without_redis_the_cache_is_disabled(settings: Settings) -> None:
    async with running_app(without_workers(settings).model_copy(update={"redis_url": None})) as (app, client):
        created = await upload_with_thumbnail(app, client)
        for _ in range(2):
            response = await client.get(metadata_url(created["id"]))
            assert response.status_code == 200
            assert response.headers["X-Cache"] == "DISABLED"
        health = (await client.get("/health")).json()
        assert (health["status"], health["cache"], health["rate_limiter"]) == ("healthy", "disabled", "memory")


async def test_unknown_image_is_404_and_caches_nothing(client: httpx.AsyncClient, raw_redis: Redis) -> None:
    missing = str(uuid.uuid4())
    response = await client.get(metadata_url(missing))
    assert response.status_code == 404
    assert await raw_redis.exists(cache_key(missing)) == 0


async def test_health_reports_redis_components_when_redis_is_up(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["cache"] == "connected"
    assert body["rate_limiter"] == "redis"
    assert body["upload_concurrency"] == {
        "limit": app.state.settings.upload_concurrency_limit,
        "in_use": 0,
        "waiting": 0,
    }


async def test_near_copy_hit_is_the_same_response_the_route_sends(
    api: tuple[FastAPI, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hits on the process's near copy are answered before routing (ADR 0011): byte for byte the same."""
    app, client = api
    created = await upload_with_thumbnail(app, client)
    assert (await client.get(metadata_url(created["id"]))).headers["X-Cache"] == "MISS"
    routed = await client.get(metadata_url(created["id"]))  # read from Redis by the route, then kept near
    assert app.state.cache.near.get(created["id"]) is not None
    reached_router = count_routed(app, monkeypatch)
    early = await client.get(metadata_url(created["id"]))  # answered from the near copy
    assert reached_router.paths == []

    assert comparable(early) == comparable(routed)
    assert routed.headers["X-Cache"] == "HIT"
    assert early.json()["id"] == created["id"]

    # Other spellings of the id and other methods are routed as usual.
    upper = await client.get(metadata_url(created["id"].upper()))
    assert (upper.status_code, upper.json()) == (200, early.json())
    assert (await client.head(metadata_url(created["id"]))).status_code == 405
