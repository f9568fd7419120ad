"""Rate limits over HTTP: 429 with Retry-After, RateLimit-* headers, keying, sharing, and spoofing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from tests.api.apps import client_of, running_app
from tests.api.helpers import image_row_count
from tests.api.waiting import image_row
from tests.factories import UPLOAD_URL, bearer, make_jpeg, upload

UPLOAD_LIMIT = 3
AUTH_LIMIT = 2
PASSWORD = "correct horse battery"


def limited(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(
        update={"rate_limit_per_minute": UPLOAD_LIMIT, "auth_rate_limit_per_minute": AUTH_LIMIT, **overrides}
    )


@pytest.fixture
async def limited_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(limited(settings)) as running:
        yield running


def assert_rate_limit_headers(response: httpx.Response, *, limit: int, remaining: int) -> None:
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == str(remaining)
    assert 0 <= int(response.headers["RateLimit-Reset"]) <= 60


def assert_refused(response: httpx.Response, *, limit: int) -> None:
    assert response.status_code == 429, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "RATE_LIMIT_EXCEEDED"
    assert detail["message"]
    assert detail["details"]["limit"] == limit
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert detail["details"]["retry_after_seconds"] == retry_after
    assert_rate_limit_headers(response, limit=limit, remaining=0)


async def test_fourth_upload_in_a_minute_is_429_with_retry_after(
    limited_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = limited_app
    for remaining in (2, 1, 0):
        response = await upload(client, make_jpeg())
        assert response.status_code == 201, response.text
        assert_rate_limit_headers(response, limit=UPLOAD_LIMIT, remaining=remaining)
    refused = await upload(client, make_jpeg())
    assert_refused(refused, limit=UPLOAD_LIMIT)
    assert await image_row_count(app) == UPLOAD_LIMIT


async def test_refused_requests_are_refused_again_and_other_endpoints_are_not_limited(
    limited_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _app, client = limited_app
    created = [await upload(client, make_jpeg()) for _ in range(UPLOAD_LIMIT)]
    for _ in range(2):
        assert_refused(await upload(client, make_jpeg()), limit=UPLOAD_LIMIT)
    # Reading is not limited, and carries no RateLimit headers.
    for _ in range(UPLOAD_LIMIT + 2):
        response = await client.get(f"/api/v1/images/{created[0].json()['id']}")
        assert response.status_code == 200
        assert "RateLimit-Limit" not in response.headers
    assert (await client.get("/health")).status_code == 200


async def test_login_register_and_token_share_the_auth_limit(
    limited_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _app, client = limited_app
    registered = await client.post("/api/v1/auth/register", json={"email": "a@example.com", "password": PASSWORD})
    assert registered.status_code == 201
    assert_rate_limit_headers(registered, limit=AUTH_LIMIT, remaining=1)
    logged_in = await client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": PASSWORD})
    assert logged_in.status_code == 200
    assert_rate_limit_headers(logged_in, limit=AUTH_LIMIT, remaining=0)

    token = await client.post("/api/v1/auth/token", data={"username": "a@example.com", "password": PASSWORD})
    assert_refused(token, limit=AUTH_LIMIT)
    assert_refused(
        await client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": PASSWORD}),
        limit=AUTH_LIMIT,
    )
    assert_refused(
        await client.post("/api/v1/auth/register", json={"email": "b@example.com", "password": PASSWORD}),
        limit=AUTH_LIMIT,
    )
    # Uploads have a budget of their own.
    assert (await upload(client, make_jpeg())).status_code == 201


async def test_failed_logins_count_too(limited_app: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _app, client = limited_app
    for remaining in (1, 0):
        wrong = await client.post("/api/v1/auth/login", json={"email": "x@example.com", "password": "wrong password"})
        assert wrong.status_code == 401
        assert_rate_limit_headers(wrong, limit=AUTH_LIMIT, remaining=remaining)
    refused = await client.post("/api/v1/auth/login", json={"email": "x@example.com", "password": "wrong password"})
    assert_refused(refused, limit=AUTH_LIMIT)


async def test_each_logged_in_user_has_a_budget_of_their_own(settings: Settings) -> None:
    async with running_app(limited(settings, auth_rate_limit_per_minute=10)) as (_app, client):
        tokens = []
        for email in ("first@example.com", "second@example.com"):
            response = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
            assert response.status_code == 201
            tokens.append(response.json()["access_token"])

        for token in tokens:  # same address, different users
            for remaining in (2, 1, 0):
                response = await upload(client, make_jpeg(), headers=bearer(token))
                assert response.status_code == 201, response.text
                assert_rate_limit_headers(response, limit=UPLOAD_LIMIT, remaining=remaining)
            assert_refused(await upload(client, make_jpeg(), headers=bearer(token)), limit=UPLOAD_LIMIT)

        # Anonymous uploads from the same address are counted by address, untouched by the users'.
        anonymous = await upload(client, make_jpeg())
        assert anonymous.status_code == 201
        assert_rate_limit_headers(anonymous, limit=UPLOAD_LIMIT, remaining=2)


async def test_two_processes_share_one_limit_through_redis(settings: Settings) -> None:
    async with running_app(limited(settings)) as (_first, first), running_app(limited(settings)) as (_second, second):
        assert (await upload(first, make_jpeg())).status_code == 201
        assert (await upload(second, make_jpeg())).status_code == 201
        third = await upload(first, make_jpeg())
        assert third.status_code == 201
        assert_rate_limit_headers(third, limit=UPLOAD_LIMIT, remaining=0)
        assert_refused(await upload(second, make_jpeg()), limit=UPLOAD_LIMIT)
        assert_refused(await upload(first, make_jpeg()), limit=UPLOAD_LIMIT)


class EndlessBody:
    """A request body that would take minutes to send, counting what anyone actually pulled from it."""

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.bytes_yielded = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.bytes_yielded += len(self.head)
        yield self.head
        chunk = b"\xff" * 65536
        for _ in range(100_000):  # 6.5 GB if anyone read it all
            self.bytes_yielded += len(chunk)
            yield chunk


async def test_upload_limit_is_checked_before_the_body_is_read(settings: Settings) -> None:
    async with running_app(limited(settings, rate_limit_per_minute=1)) as (_app, client):
        assert (await upload(client, make_jpeg())).status_code == 201
        body = EndlessBody(b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n')
        # Chunked (no Content-Length), so nothing but the limit can refuse it without reading it.
        headers = {"content-type": "multipart/form-data; boundary=b"}
        refused = await client.post(UPLOAD_URL, content=body, headers=headers)
        assert_refused(refused, limit=1)
        assert body.bytes_yielded == 0


async def test_login_limit_is_checked_before_the_body_is_parsed(settings: Settings) -> None:
    async with running_app(limited(settings, auth_rate_limit_per_minute=1)) as (_app, client):
        first = await client.post("/api/v1/auth/login", json={"email": "x@example.com", "password": "wrong password"})
        assert first.status_code == 401
        body = EndlessBody(b'{"email": "x@example.com", "password": "')
        refused = await client.post("/api/v1/auth/login", content=body, headers={"content-type": "application/json"})
        assert_refused(refused, limit=1)
        assert body.bytes_yielded == 0


async def test_refused_uploads_count_and_carry_the_headers_too(
    limited_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _app, client = limited_app
    rejected = await upload(client, b"not an image", filename="notes.txt")
    assert rejected.status_code == 400
    assert_rate_limit_headers(rejected, limit=UPLOAD_LIMIT, remaining=2)
    too_many_files = await client.post(
        UPLOAD_URL, files=[("file", ("a.jpg", make_jpeg())), ("file", ("b.jpg", make_jpeg()))]
    )
    assert too_many_files.status_code in (400, 422)
    assert_rate_limit_headers(too_many_files, limit=UPLOAD_LIMIT, remaining=1)
    accepted = await upload(client, make_jpeg())
    assert accepted.status_code == 201
    assert_rate_limit_headers(accepted, limit=UPLOAD_LIMIT, remaining=0)
    assert_refused(await upload(client, make_jpeg()), limit=UPLOAD_LIMIT)


async def test_forwarded_for_from_an_untrusted_client_is_ignored(
    limited_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = limited_app  # the client is 203.0.113.7, not a trusted proxy
    created = []
    for number in range(UPLOAD_LIMIT):
        response = await upload(client, make_jpeg(), headers={"X-Forwarded-For": f"198.51.100.{number}"})
        assert response.status_code == 201
        created.append(response.json()["id"])
    refused = await upload(client, make_jpeg(), headers={"X-Forwarded-For": "198.51.100.99"})
    assert_refused(refused, limit=UPLOAD_LIMIT)
    assert_refused(await upload(client, make_jpeg()), limit=UPLOAD_LIMIT)
    assert (await image_row(app, created[0])).upload_ip == "203.0.113.7"


async def test_trusted_proxy_gives_each_forwarded_client_its_own_budget(
    limited_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, _client = limited_app
    # 127.0.0.1 is the default FORWARDED_ALLOW_IPS, like a reverse proxy on the same host.
    async with client_of(app, ("127.0.0.1", 40000)) as proxy:
        first_ids = []
        for remaining in (2, 1, 0):
            response = await upload(proxy, make_jpeg(), headers={"X-Forwarded-For": "198.51.100.1"})
            assert response.status_code == 201
            assert_rate_limit_headers(response, limit=UPLOAD_LIMIT, remaining=remaining)
            first_ids.append(response.json()["id"])
        assert_refused(
            await upload(proxy, make_jpeg(), headers={"X-Forwarded-For": "198.51.100.1"}), limit=UPLOAD_LIMIT
        )

        other = await upload(proxy, make_jpeg(), headers={"X-Forwarded-For": "198.51.100.2"})
        assert other.status_code == 201
        assert_rate_limit_headers(other, limit=UPLOAD_LIMIT, remaining=2)
    assert (await image_row(app, first_ids[0])).upload_ip == "198.51.100.1"
    assert (await image_row(app, other.json()["id"])).upload_ip == "198.51.100.2"


async def test_without_redis_an_in_process_limiter_still_refuses(settings: Settings) -> None:
    async with running_app(limited(settings, redis_url=None)) as (_app, client):
        for remaining in (2, 1, 0):
            response = await upload(client, make_jpeg())
            assert response.status_code == 201
            assert_rate_limit_headers(response, limit=UPLOAD_LIMIT, remaining=remaining)
        assert_refused(await upload(client, make_jpeg()), limit=UPLOAD_LIMIT)
        health = (await client.get("/health")).json()
        assert (health["cache"], health["rate_limiter"]) == ("disabled", "memory")


async def test_api_keys_are_limited_per_key_and_password_checks_share_the_auth_budget(settings: Settings) -> None:
    async with running_app(limited(settings, auth_rate_limit_per_minute=10)) as (_app, client):
        token = (
            await client.post("/api/v1/auth/register", json={"email": "k@example.com", "password": PASSWORD})
        ).json()["access_token"]
        keys = [
            (
                await client.post(
                    "/api/v1/users/me/api-keys", json={"name": name, "scopes": ["images:upload"]}, headers=bearer(token)
                )
            ).json()["key"]
            for name in ("first", "second")
        ]
        for _ in range(UPLOAD_LIMIT):
            assert (await upload(client, make_jpeg(), headers={"X-API-Key": keys[0]})).status_code == 201
        assert_refused(await upload(client, make_jpeg(), headers={"X-API-Key": keys[0]}), limit=UPLOAD_LIMIT)
        # The same key as a Bearer token is the same budget; another key has its own.
        assert_refused(await upload(client, make_jpeg(), headers=bearer(keys[0])), limit=UPLOAD_LIMIT)
        assert (await upload(client, make_jpeg(), headers={"X-API-Key": keys[1]})).status_code == 201

    async with running_app(limited(settings, auth_rate_limit_per_minute=2)) as (_app, client):
        token = (
            await client.post("/api/v1/auth/register", json={"email": "p@example.com", "password": PASSWORD})
        ).json()["access_token"]
        wrong = {"current_password": "guess number one", "new_password": "whatever it is now"}
        assert (await client.post("/api/v1/users/me/password", json=wrong, headers=bearer(token))).status_code == 401
        assert_refused(
            await client.request(
                "DELETE", "/api/v1/users/me", json={"password": "guess two", "confirm": "DELETE"}, headers=bearer(token)
            ),
            limit=2,
        )
