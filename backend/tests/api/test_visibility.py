"""Private images (ADR 0017): their owner reads them like any other; to everyone else they do not exist."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.config import Settings
from tests.api.apps import run_thumbnail_job, running_app, without_workers
from tests.api.near_copies import count_routed, warm_near_copy
from tests.error_checks import without_request_id
from tests.factories import bearer, make_jpeg, register, upload

IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An API process whose thumbnails the test makes itself, so it knows when they are ready."""
    async with running_app(without_workers(settings)) as running:
        yield running


async def upload_image(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str] | None = None, **fields: str
) -> dict[str, Any]:
    response = await upload(client, make_jpeg(320, 240), headers=headers or {}, data=fields)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    await run_thumbnail_job(app, created["id"])
    return created


async def api_key(client: httpx.AsyncClient, token: str, *scopes: str) -> str:
    response = await client.post(
        "/api/v1/users/me/api-keys", json={"name": "tool", "scopes": list(scopes)}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def urls(image_id: str) -> dict[str, str]:
    base = f"/api/v1/images/{image_id}"
    return {
        "metadata": base,
        "file": f"{base}/file",
        "variant": f"{base}/file?w=150&format=webp",
        "thumbnail": f"{base}/thumbnail",
    }


def not_found_body(image_id: str) -> dict[str, Any]:
    return {"detail": {"code": "IMAGE_NOT_FOUND", "message": "No image with this id.", "details": {"id": image_id}}}


def body_of(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON without its request id (its own in every answer)."""
    body: dict[str, Any] = response.json()
    detail = body["detail"]
    return {"detail": {**detail, "details": without_request_id(detail["details"])}}


async def test_the_owner_reads_a_private_image_with_a_login_and_with_a_read_key(
    api: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = api
    owner = await register(client, "owner@example.com")
    token = owner["access_token"]
    created = await upload_image(app, client, bearer(token), visibility="private")
    assert created["visibility"] == "private"
    key = await api_key(client, token, "images:read")
    for credentials in (bearer(token), {"X-API-Key": key}, bearer(key)):
        for name, url in urls(created["id"]).items():
            response = await client.get(url, headers=credentials)
            assert response.status_code == 200, (name, response.text)
            # Kept by nobody but the owner's browser, and not even there.
            assert response.headers["cache-control"] == "private, no-store", name
        head = await client.head(urls(created["id"])["file"], headers=credentials)
        assert (head.status_code, head.headers["cache-control"]) == (200, "private, no-store")
    metadata = (await client.get(urls(created["id"])["metadata"], headers=bearer(token))).json()
    assert metadata["visibility"] == "private"
    assert "owner_id" not in metadata
    # A 304 says the same about caching as the answer it stands for.
    etag = (await client.get(urls(created["id"])["file"], headers=bearer(token))).headers["etag"]
    revalidated = await client.get(urls(created["id"])["file"], headers={**bearer(token), "If-None-Match": etag})
    assert (revalidated.status_code, revalidated.headers["cache-control"]) == (304, "private, no-store")


async def test_a_private_image_is_not_found_for_anyone_else_exactly_like_an_unknown_id(
    api: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = api
    owner = await register(client, "owner@example.com")
    stranger = await register(client, "stranger@example.com")
    created = await upload_image(app, client, bearer(owner["access_token"]), visibility="private")
    strangers_key = await api_key(client, stranger["access_token"], "images:read")
    unknown = str(uuid.uuid4())
    for credentials in ({}, bearer(stranger["access_token"]), {"X-API-Key": strangers_key}):
        for name, url in urls(created["id"]).items():
            response = await client.get(url, headers=credentials)
            assert (response.status_code, body_of(response)) == (404, not_found_body(created["id"])), name
            unknown_answer = await client.get(url.replace(created["id"], unknown), headers=credentials)
            assert body_of(unknown_answer) == not_found_body(unknown), name
        head = await client.head(urls(created["id"])["file"], headers=credentials)
        assert head.status_code == 404
    # Nor can anyone else delete it, or learn from the answer that it exists.
    refused = await client.delete(urls(created["id"])["metadata"], headers=bearer(stranger["access_token"]))
    assert (refused.status_code, body_of(refused)) == (404, not_found_body(created["id"]))
    assert (await client.get(urls(created["id"])["file"], headers=bearer(owner["access_token"]))).status_code == 200


async def test_the_owners_key_without_read_scope_is_refused_with_insufficient_scope(
    api: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = api
    owner = await register(client, "owner@example.com")
    created = await upload_image(app, client, bearer(owner["access_token"]), visibility="private")
    upload_key = await api_key(client, owner["access_token"], "images:upload")
    for url in urls(created["id"]).values():
        response = await client.get(url, headers={"X-API-Key": upload_key})
        assert response.status_code == 403
        assert response.json()["detail"]["code"] == "INSUFFICIENT_SCOPE"


async def test_a_bad_credential_on_a_private_image_is_an_error_never_anonymous(
    api: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = api
    owner = await register(client, "owner@example.com")
    created = await upload_image(app, client, bearer(owner["access_token"]), visibility="private")
    response = await client.get(urls(created["id"])["file"], headers=bearer("not-a-token"))
    assert (response.status_code, response.json()["detail"]["code"]) == (401, "UNAUTHORIZED")


async def test_private_metadata_is_never_cached_nor_answered_from_a_near_copy(
    api: tuple[FastAPI, httpx.AsyncClient], raw_redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client = api
    owner = await register(client, "owner@example.com")
    created = await upload_image(app, client, bearer(owner["access_token"]), visibility="private")
    for _ in range(3):
        response = await client.get(urls(created["id"])["metadata"], headers=bearer(owner["access_token"]))
        assert response.headers["x-cache"] == "MISS"
        assert (await client.get(urls(created["id"])["file"], headers=bearer(owner["access_token"]))).status_code == 200
    assert await raw_redis.exists(f"chitram:image:{created['id']}") == 0
    assert app.state.cache.near.get(created["id"]) is None
    routed = count_routed(app, monkeypatch)
    for url in (urls(created["id"])["metadata"], urls(created["id"])["file"]):
        assert (await client.get(url)).status_code == 404
    # Every request reached the route, which refused it: no answer came from before routing.
    assert routed.paths == [urls(created["id"])["metadata"], urls(created["id"])["file"]]


async def test_the_owners_list_shows_private_images(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = api
    owner = await register(client, "owner@example.com")
    private = await upload_image(app, client, bearer(owner["access_token"]), visibility="private")
    unlisted = await upload_image(app, client, bearer(owner["access_token"]))
    listed = (await client.get("/api/v1/users/me/images", headers=bearer(owner["access_token"]))).json()["items"]
    assert [(item["id"], item["visibility"]) for item in listed] == [
        (unlisted["id"], "unlisted"),
        (private["id"], "private"),
    ]


async def test_anonymous_uploads_cannot_be_private(client: httpx.AsyncClient) -> None:
    response = await upload(client, make_jpeg(), data={"visibility": "private"})
    assert response.status_code == 401


async def test_unlisted_images_keep_their_immutable_public_caching(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = api
    created = await upload_image(app, client)
    for url in urls(created["id"]).values():
        response = await client.get(url)
        assert response.status_code == 200
        if url != urls(created["id"])["metadata"]:
            assert response.headers["cache-control"] == IMMUTABLE


async def test_the_owner_makes_an_image_private_and_unlisted_again_at_once_even_when_cached(
    api: tuple[FastAPI, httpx.AsyncClient], raw_redis: Redis
) -> None:
    app, client = api
    owner = await register(client, "owner@example.com")
    token = owner["access_token"]
    created = await upload_image(app, client, bearer(token))
    await warm_near_copy(app, client, urls(created["id"])["metadata"], created["id"])
    assert (await client.get(urls(created["id"])["file"])).status_code == 200

    changed = await client.patch(urls(created["id"])["metadata"], json={"visibility": "private"}, headers=bearer(token))
    assert (changed.status_code, changed.json()["visibility"]) == (200, "private")
    assert await raw_redis.exists(f"chitram:image:{created['id']}") == 0
    for url in urls(created["id"]).values():
        assert (await client.get(url)).status_code == 404
        assert (await client.get(url, headers=bearer(token))).status_code == 200

    back = await client.patch(urls(created["id"])["metadata"], json={"visibility": "unlisted"}, headers=bearer(token))
    assert back.json()["visibility"] == "unlisted"
    assert (await client.get(urls(created["id"])["file"])).headers["cache-control"] == IMMUTABLE


async def test_a_stale_cache_write_racing_the_change_to_private_is_dropped_again(
    api: tuple[FastAPI, httpx.AsyncClient], raw_redis: Redis
) -> None:
    """A reader that loaded the row before the change commits writes the unlisted metadata back after the
    change's invalidation (cache-aside's race); the second invalidation removes it within seconds."""
    app, client = api
    owner = await register(client, "racing-owner@example.com")
    created = await upload_image(app, client, bearer(owner["access_token"]))
    key = f"chitram:image:{created['id']}"
    assert (await client.get(urls(created["id"])["metadata"])).status_code == 200
    stale = await raw_redis.get(key)
    assert stale is not None  # what the slow reader holds: the unlisted metadata

    changed = await client.patch(
        urls(created["id"])["metadata"], json={"visibility": "private"}, headers=bearer(owner["access_token"])
    )
    assert changed.status_code == 200
    await raw_redis.set(key, stale)  # the slow reader's write, after the first invalidation
    deadline = asyncio.get_running_loop().time() + 5
    while await raw_redis.exists(key):
        assert asyncio.get_running_loop().time() < deadline, "the stale unlisted entry outlived the second invalidation"
        await asyncio.sleep(0.1)
    assert (await client.get(urls(created["id"])["metadata"])).status_code == 404
    assert (await client.get(urls(created["id"])["file"])).status_code == 404


async def test_only_the_owner_changes_an_image_with_a_login_or_an_upload_key(
    api: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = api
    owner = await register(client, "owner@example.com")
    stranger = await register(client, "stranger@example.com")
    unlisted = await upload_image(app, client, bearer(owner["access_token"]))
    private = await upload_image(app, client, bearer(owner["access_token"]), visibility="private")
    anonymous = await upload_image(app, client)
    body = {"visibility": "private"}

    async def patch(image: dict[str, Any], headers: dict[str, str]) -> tuple[int, str | None]:
        response = await client.patch(urls(image["id"])["metadata"], json=body, headers=headers)
        return response.status_code, None if response.status_code == 200 else response.json()["detail"]["code"]

    assert await patch(unlisted, {}) == (401, "UNAUTHORIZED")
    assert await patch(private, {}) == (404, "IMAGE_NOT_FOUND")
    assert await patch(unlisted, bearer(stranger["access_token"])) == (403, "FORBIDDEN")
    assert await patch(private, bearer(stranger["access_token"])) == (404, "IMAGE_NOT_FOUND")
    assert await patch(anonymous, bearer(stranger["access_token"])) == (403, "FORBIDDEN")
    read_key = await api_key(client, owner["access_token"], "images:read")
    assert await patch(unlisted, {"X-API-Key": read_key}) == (403, "INSUFFICIENT_SCOPE")
    upload_key = await api_key(client, owner["access_token"], "images:upload")
    assert await patch(unlisted, {"X-API-Key": upload_key}) == (200, None)
    refused = await client.patch(
        urls(private["id"])["metadata"], json={"visibility": "public"}, headers=bearer(owner["access_token"])
    )
    assert refused.status_code == 422


async def test_presigned_delivery_redirects_the_owner_to_a_private_short_lived_url(settings: Settings) -> None:
    presigned = without_workers(settings).model_copy(update={"file_delivery": "presigned-redirect"})
    body = make_jpeg(300, 200)
    async with running_app(presigned) as (_, client):
        owner = await register(client, "owner@example.com")
        response = await upload(client, body, headers=bearer(owner["access_token"]), data={"visibility": "private"})
        created = response.json()
        redirect = await client.get(created["url"], headers=bearer(owner["access_token"]))
        assert redirect.status_code == 302
        assert redirect.headers["cache-control"] == "private, no-store"
        async with httpx.AsyncClient() as s3_client:
            direct = await s3_client.get(redirect.headers["location"])
        assert (direct.status_code, direct.content) == (200, body)
        assert direct.headers["cache-control"] == "private, no-store"
        assert (await client.get(created["url"])).status_code == 404
        # Unlisted images keep their reusable redirect.
        public = (await upload(client, make_jpeg(200, 100))).json()
        assert (await client.get(public["url"])).headers["cache-control"].startswith("private, max-age=")
