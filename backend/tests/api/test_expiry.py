"""Images that expire (ADR 0017): gone for everyone at their moment, then removed, bytes and all, by the sweep."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import func, select

from app.config import Settings
from app.media.thumbnails import thumbnail_key
from app.models import Image, User
from app.models.base import utc_now
from app.services import expiry
from tests.api.apps import run_thumbnail_job, running_app, without_workers
from tests.api.helpers import bucket_keys, original_key_of
from tests.api.near_copies import count_routed, warm_near_copy
from tests.api.waiting import wait_until
from tests.factories import bearer, make_jpeg, register, upload

PASSWORD = "correct horse battery"


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An API process that neither makes thumbnails nor sweeps by itself: the test does both when it wants."""
    async with running_app(without_workers(settings)) as running:
        yield running


async def upload_image(
    app: FastAPI,
    client: httpx.AsyncClient,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> dict[str, Any]:
    response = await upload(client, body or make_jpeg(320, 240), headers=headers or {}, data=fields)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    await run_thumbnail_job(app, created["id"])
    return created


def moment(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def sleep_past(expires_at: str) -> None:
    await anyio.sleep(max(0.0, moment(expires_at) - utc_now().timestamp()) + 0.05)


def read_urls(image_id: str) -> list[str]:
    base = f"/api/v1/images/{image_id}"
    return [base, f"{base}/file", f"{base}/file?w=150", f"{base}/file?w=150&format=webp", f"{base}/thumbnail"]


async def row_exists(app: FastAPI, image_id: str) -> bool:
    async with app.state.sessionmaker() as session:
        return await session.get(Image, uuid.UUID(image_id)) is not None


async def test_an_expiring_upload_says_when_and_is_cached_no_longer_than_it_lives(
    api: tuple[FastAPI, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client = api
    created = await upload_image(app, client, expires_in="1h")
    assert 3590 < moment(created["expires_at"]) - utc_now().timestamp() <= 3600
    await warm_near_copy(app, client, f"/api/v1/images/{created['id']}", created["id"])
    routed = await client.get(created["url"])
    routed_seconds = int(routed.headers["cache-control"].removeprefix("public, max-age="))
    assert 3590 < routed_seconds <= 3600
    reached_router = count_routed(app, monkeypatch)
    early = await client.get(created["url"])  # from the near copy, with the same caching
    assert reached_router.paths == []
    assert early.headers["cache-control"].startswith("public, max-age=")
    assert "immutable" not in early.headers["cache-control"]


async def test_an_expired_image_is_not_found_at_once_even_from_warm_caches(
    api: tuple[FastAPI, httpx.AsyncClient], settings: Settings, raw_redis: Redis
) -> None:
    app, client = api
    created = await upload_image(app, client, expires_in="2")
    image_id = created["id"]
    await warm_near_copy(app, client, f"/api/v1/images/{image_id}", image_id)
    for url in read_urls(image_id):  # the file and its variants warm in memory too
        assert (await client.get(url)).status_code == 200, url
    assert app.state.cache.near.get(image_id) is not None
    await sleep_past(created["expires_at"])

    for url in read_urls(image_id):
        response = await client.get(url)
        assert (response.status_code, response.json()["detail"]["code"]) == (404, "IMAGE_NOT_FOUND"), url
    assert (await client.head(f"/api/v1/images/{image_id}/file")).status_code == 404
    # Nothing removed it yet: the answer came from the moment alone, with the row and Redis's entry still there.
    assert await row_exists(app, image_id)
    assert await raw_redis.exists(f"chitram:image:{image_id}") == 1
    # Another process, which finds the metadata in Redis, answers the same.
    async with running_app(without_workers(settings), empty_tables_on_exit=False) as (_, other):
        for url in read_urls(image_id):
            assert (await other.get(url)).status_code == 404, url


async def test_the_sweep_removes_the_row_objects_cache_and_usage(
    api: tuple[FastAPI, httpx.AsyncClient], settings: Settings, raw_redis: Redis
) -> None:
    app, client = api
    token = (await register(client, "owner@example.com"))["access_token"]
    shared_body = make_jpeg(320, 240, color=(10, 200, 10))
    kept = await upload_image(app, client, shared_body, headers=bearer(token))
    shares_content = await upload_image(app, client, shared_body, headers=bearer(token), expires_in="1")
    alone = await upload_image(app, client, make_jpeg(200, 300), headers=bearer(token), expires_in="1")
    for created in (shares_content, alone):
        assert (await client.get(f"/api/v1/images/{created['id']}")).status_code == 200
        assert (await client.get(f"{created['url']}?w=150")).status_code == 200
    usage = (await client.get("/api/v1/users/me/usage", headers=bearer(token))).json()
    assert usage["used_images"] == 3
    before = bucket_keys(settings)
    assert original_key_of(alone) in before
    assert [key for key in before if key.startswith(f"variants/{alone['checksum'][:2]}/{alone['checksum']}/")]
    await sleep_past(alone["expires_at"])
    await sleep_past(shares_content["expires_at"])

    assert await expiry.sweep_once(app.state.sessionmaker, app.state.storage, app.state.cache) == 2
    assert not await row_exists(app, alone["id"])
    assert not await row_exists(app, shares_content["id"])
    keys = bucket_keys(settings)
    assert original_key_of(alone) not in keys
    assert not [key for key in keys if alone["id"] in key or shares_content["id"] in key]  # thumbnails
    assert thumbnail_key(alone["id"], "image/jpeg") not in keys
    assert not [key for key in keys if alone["checksum"] in key]  # its variants too
    # The content another image still uses stays, and that image with it.
    assert original_key_of(kept) in keys
    assert (await client.get(kept["url"])).status_code == 200
    assert await raw_redis.exists(f"chitram:image:{alone['id']}") == 0
    usage = (await client.get("/api/v1/users/me/usage", headers=bearer(token))).json()
    assert (usage["used_images"], usage["used_bytes"]) == (1, kept["file_size"])
    assert await expiry.sweep_once(app.state.sessionmaker, app.state.storage, app.state.cache) == 0


async def test_sweeps_at_once_remove_each_image_once(
    api: tuple[FastAPI, httpx.AsyncClient], settings: Settings
) -> None:
    app, client = api
    token = (await register(client, "owner@example.com"))["access_token"]
    for number in range(12):
        await upload_image(app, client, make_jpeg(100 + number, 80), headers=bearer(token), expires_in="1")
    await anyio.sleep(1.1)
    removed = await asyncio.gather(
        *(expiry.sweep_once(app.state.sessionmaker, app.state.storage, app.state.cache, batch_size=3) for _ in range(4))
    )
    assert sum(removed) == 12
    usage = (await client.get("/api/v1/users/me/usage", headers=bearer(token))).json()
    assert (usage["used_images"], usage["used_bytes"]) == (0, 0)
    assert not [key for key in bucket_keys(settings) if key.startswith("originals/")]


async def test_the_api_process_that_runs_background_work_sweeps_by_itself(settings: Settings) -> None:
    sweeping = settings.model_copy(update={"expiry_sweep_interval_seconds": 0.2})
    async with running_app(sweeping) as (app, client):
        created = (await upload(client, make_jpeg(), data={"expires_in": "1"})).json()

        async def gone() -> bool:
            # The objects go just after the row's removal commits.
            return not await row_exists(app, created["id"]) and original_key_of(created) not in bucket_keys(settings)

        await wait_until(gone, what="the sweep to remove the expired image and its bytes", within=10)


@pytest.mark.parametrize("expires_in", ["0", "366d", "soon", "-5", "1y"])
async def test_an_upload_expiry_out_of_bounds_is_a_validation_error(client: httpx.AsyncClient, expires_in: str) -> None:
    response = await upload(client, make_jpeg(), data={"expires_in": expires_in})
    assert (response.status_code, response.json()["detail"]["code"]) == (422, "VALIDATION_ERROR")


async def test_the_owner_sets_and_clears_the_expiry_within_bounds(
    api: tuple[FastAPI, httpx.AsyncClient], raw_redis: Redis
) -> None:
    app, client = api
    token = (await register(client, "owner@example.com"))["access_token"]
    created = await upload_image(app, client, headers=bearer(token))
    url = f"/api/v1/images/{created['id']}"
    assert (await client.get(url)).headers["x-cache"] == "MISS"
    assert (await client.get(url)).headers["x-cache"] == "HIT"
    for bad in (0, -1, 365 * 86400 + 1, "soon"):
        response = await client.patch(url, json={"expires_in": bad}, headers=bearer(token))
        assert (response.status_code, response.json()["detail"]["code"]) == (422, "VALIDATION_ERROR"), bad
    changed = await client.patch(url, json={"expires_in": 1}, headers=bearer(token))
    assert changed.status_code == 200
    assert await raw_redis.exists(f"chitram:image:{created['id']}") == 0  # dropped with the change
    assert (await client.get(url)).json()["expires_at"] == changed.json()["expires_at"]
    cleared = await client.patch(url, json={"expires_in": None}, headers=bearer(token))
    assert cleared.json()["expires_at"] is None
    assert (await client.get(url)).json()["expires_at"] is None
    await anyio.sleep(1.1)
    assert (await client.get(created["url"])).status_code == 200
    # A field left out stays as it was.
    await client.patch(url, json={"expires_in": 3600}, headers=bearer(token))
    untouched = await client.patch(url, json={"visibility": "unlisted"}, headers=bearer(token))
    assert untouched.json()["expires_at"] is not None


async def test_a_deleted_accounts_images_go_at_once_then_with_the_sweep_and_the_account_last(
    api: tuple[FastAPI, httpx.AsyncClient], settings: Settings
) -> None:
    app, client = api
    account = await register(client, "leaving@example.com", PASSWORD)
    token = account["access_token"]
    images = [
        await upload_image(app, client, make_jpeg(120 + number, 90), headers=bearer(token)) for number in range(2)
    ]
    images.append(await upload_image(app, client, make_jpeg(90, 90), headers=bearer(token), visibility="private"))
    for created in images[:2]:
        await warm_near_copy(app, client, f"/api/v1/images/{created['id']}", created["id"])
    response = await client.request(
        "DELETE", "/api/v1/users/me", json={"password": PASSWORD, "confirm": "DELETE"}, headers=bearer(token)
    )
    assert response.status_code == 204, response.text
    for created in images:
        for url in read_urls(created["id"]):
            assert (await client.get(url)).status_code == 404, url

    assert await expiry.sweep_once(app.state.sessionmaker, app.state.storage, app.state.cache) == 3
    keys = bucket_keys(settings)
    for created in images:
        assert not await row_exists(app, created["id"])
        assert original_key_of(created) not in keys
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0


async def test_the_owners_list_leaves_out_expired_images_before_the_sweep(
    api: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = api
    token = (await register(client, "owner@example.com"))["access_token"]
    kept = await upload_image(app, client, headers=bearer(token))
    ending = await upload_image(app, client, make_jpeg(90, 60), headers=bearer(token), expires_in="1")
    listed = (await client.get("/api/v1/users/me/images", headers=bearer(token))).json()["items"]
    assert [item["id"] for item in listed] == [ending["id"], kept["id"]]
    await sleep_past(ending["expires_at"])
    listed = (await client.get("/api/v1/users/me/images", headers=bearer(token))).json()["items"]
    assert [item["id"] for item in listed] == [kept["id"]]
    assert await row_exists(app, ending["id"])
