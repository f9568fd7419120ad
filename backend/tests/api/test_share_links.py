"""Signed share links (ADR 0017): a private image's file for anyone holding the link, until it ends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import anyio
import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.models.base import utc_now
from app.services import share_links
from app.services.share_links import SharedFile
from tests.api.apps import client_of, run_thumbnail_job, running_app, without_workers
from tests.factories import bearer, make_jpeg, register, upload


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(without_workers(settings)) as running:
        yield running


@pytest.fixture
async def owner(api: tuple[FastAPI, httpx.AsyncClient]) -> dict[str, str]:
    _, client = api
    account = await register(client, "owner@example.com")
    return bearer(account["access_token"])


async def private_image(
    app: FastAPI, client: httpx.AsyncClient, owner: dict[str, str], **fields: str
) -> dict[str, Any]:
    response = await upload(client, make_jpeg(320, 240), headers=owner, data={"visibility": "private", **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    await run_thumbnail_job(app, created["id"])
    return created


async def share(client: httpx.AsyncClient, image_id: str, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await client.post(f"/api/v1/images/{image_id}/share", json={"expires_in": 600, **body}, headers=headers)


async def link(client: httpx.AsyncClient, image_id: str, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await share(client, image_id, headers, **body)
    assert response.status_code == 201, response.text
    shared: dict[str, Any] = response.json()
    return shared


def altered(url: str, **changes: str | None) -> str:
    """`url` with query parameters replaced (None drops one)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    return parts._replace(query=urlencode(query)).geturl()


async def test_a_share_link_serves_the_private_file_to_anyone_byte_for_byte(
    api: tuple[FastAPI, httpx.AsyncClient], owner: dict[str, str]
) -> None:
    app, client = api
    created = await private_image(app, client, owner)
    shared = await link(client, created["id"], owner)
    assert shared["url"].startswith(f"http://testserver/api/v1/images/{created['id']}/file?exp=")
    expires_at = shared["expires_at"]
    assert abs((utc_now() + timedelta(seconds=600)).timestamp() - _timestamp(expires_at)) < 5

    async with client_of(app) as anonymous:
        by_link = await anonymous.get(shared["url"])
        assert by_link.status_code == 200
        assert by_link.content == (await client.get(created["url"], headers=owner)).content
        cache_control = by_link.headers["cache-control"]
        assert cache_control.startswith("private, max-age=")
        assert 0 < int(cache_control.rsplit("=", 1)[1]) <= 600
        thumbnail = await anonymous.get(shared["thumbnail_url"])
        assert thumbnail.status_code == 200
        owners_thumbnail = await client.get(f"/api/v1/images/{created['id']}/thumbnail", headers=owner)
        assert thumbnail.content == owners_thumbnail.content
        assert (await anonymous.head(shared["url"])).status_code == 200

        variant = await link(client, created["id"], owner, w=150, format="webp")
        by_variant_link = await anonymous.get(variant["url"])
        assert (by_variant_link.status_code, by_variant_link.headers["content-type"]) == (200, "image/webp")
        owners_variant = await client.get(f"{created['url']}?w=150&format=webp", headers=owner)
        assert by_variant_link.content == owners_variant.content
        # Without the link it stays hidden.
        assert (await anonymous.get(created["url"])).status_code == 404


def _timestamp(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


async def test_an_altered_link_reaches_nothing(api: tuple[FastAPI, httpx.AsyncClient], owner: dict[str, str]) -> None:
    app, client = api
    created = await private_image(app, client, owner)
    other = await private_image(app, client, owner)
    shared = await link(client, created["id"], owner, w=150, format="webp")
    url = shared["url"]
    assert (await client.get(url)).status_code == 200
    query = dict(parse_qsl(urlsplit(url).query))
    signature = query["sig"]
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    attempts = {
        "another image": url.replace(created["id"], other["id"]),
        "another width": altered(url, w="300"),
        "the original": altered(url, w=None, format=None),
        "another format": altered(url, format="jpeg"),
        "a later expiry": altered(url, exp=str(int(query["exp"]) + 3600)),
        "another signature": altered(url, sig=flipped),
        "the thumbnail": url.replace("/file?", "/thumbnail?"),
    }
    for what, attempt in attempts.items():
        response = await client.get(attempt)
        assert response.status_code == 404, what
        assert response.json()["detail"]["code"] == "IMAGE_NOT_FOUND", what
    # Half a pair, or a pair that is not a link's, is a malformed query.
    for attempt in (altered(url, sig=None), altered(url, exp=None), altered(url, exp="soon"), altered(url, sig="x")):
        response = await client.get(attempt)
        assert (response.status_code, response.json()["detail"]["code"]) == (400, "INVALID_VARIANT")


async def test_a_link_past_its_moment_is_share_link_expired(
    api: tuple[FastAPI, httpx.AsyncClient], owner: dict[str, str]
) -> None:
    app, client = api
    created = await private_image(app, client, owner)
    # Signed as the server signs, for a moment already past.
    path, _ = share_links.sign(
        app.state.jwt_secret, SharedFile(uuid.UUID(created["id"])), utc_now() - timedelta(seconds=5)
    )
    response = await client.get(path)
    assert (response.status_code, response.json()["detail"]["code"]) == (403, "SHARE_LINK_EXPIRED")
    # And one that runs out while it is used.
    shared = await link(client, created["id"], owner, expires_in=1)
    assert (await client.get(shared["url"])).status_code == 200
    await anyio.sleep(_timestamp(shared["expires_at"]) - utc_now().timestamp() + 0.1)
    response = await client.get(shared["url"])
    assert (response.status_code, response.json()["detail"]["code"]) == (403, "SHARE_LINK_EXPIRED")


async def test_a_link_never_outlives_the_image(api: tuple[FastAPI, httpx.AsyncClient], owner: dict[str, str]) -> None:
    app, client = api
    ending = await private_image(app, client, owner, expires_in="1h")
    shared = await link(client, ending["id"], owner, expires_in=86400)
    assert _timestamp(shared["expires_at"]) <= _timestamp(ending["expires_at"])

    created = await private_image(app, client, owner)
    shared = await link(client, created["id"], owner)
    assert (await client.get(shared["url"])).status_code == 200
    assert (await client.delete(f"/api/v1/images/{created['id']}", headers=owner)).status_code == 204
    for url in (shared["url"], shared["thumbnail_url"]):
        assert (await client.get(url)).status_code == 404


async def test_only_the_owner_shares_with_a_login_or_a_read_key(
    api: tuple[FastAPI, httpx.AsyncClient], owner: dict[str, str]
) -> None:
    app, client = api
    stranger = bearer((await register(client, "stranger@example.com"))["access_token"])
    private = await private_image(app, client, owner)
    unlisted = (await upload(client, make_jpeg(), headers=owner)).json()

    async def outcome(image: dict[str, Any], headers: dict[str, str]) -> tuple[int, str | None]:
        response = await share(client, image["id"], headers)
        return response.status_code, None if response.status_code == 201 else response.json()["detail"]["code"]

    assert await outcome(private, {}) == (404, "IMAGE_NOT_FOUND")
    assert await outcome(private, stranger) == (404, "IMAGE_NOT_FOUND")
    assert await outcome(unlisted, {}) == (401, "UNAUTHORIZED")
    assert await outcome(unlisted, stranger) == (403, "FORBIDDEN")
    keys = {}
    for scope in ("images:upload", "images:read"):
        created = await client.post("/api/v1/users/me/api-keys", json={"name": scope, "scopes": [scope]}, headers=owner)
        keys[scope] = {"X-API-Key": created.json()["key"]}
    assert await outcome(private, keys["images:upload"]) == (403, "INSUFFICIENT_SCOPE")
    assert await outcome(private, keys["images:read"]) == (201, None)
    assert await outcome(unlisted, owner) == (201, None)


@pytest.mark.parametrize(
    "body",
    [
        {"expires_in": 0},
        {"expires_in": 365 * 86400 + 1},
        {"expires_in": 60, "w": 123},
        {"expires_in": 60, "format": "bmp"},
        {"expires_in": 60, "colour": "red"},
    ],
)
async def test_a_share_request_out_of_bounds_is_a_validation_error(
    api: tuple[FastAPI, httpx.AsyncClient], owner: dict[str, str], body: dict[str, Any]
) -> None:
    app, client = api
    created = await private_image(app, client, owner)
    response = await client.post(f"/api/v1/images/{created['id']}/share", json=body, headers=owner)
    assert (response.status_code, response.json()["detail"]["code"]) == (422, "VALIDATION_ERROR")
