"""Inputs a review found answering 500, and a rate-limit bypass: each must now get a 4xx or a limit."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from app.config import Settings
from tests.api.apps import running_app
from tests.factories import bearer, make_jpeg, register, upload_ok


@pytest.mark.parametrize("range_header", ["bytes=²-", "bytes=-²", "bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 40])
async def test_exotic_range_digits_are_ignored_not_a_500(client: httpx.AsyncClient, range_header: str) -> None:
    body = make_jpeg()
    created = await upload_ok(client, body)
    # Sent as raw latin-1 bytes, as a hostile client can; httpx would refuse a non-ASCII str.
    response = await client.get(created["url"], headers={"Range": range_header.encode("latin-1")})
    assert response.status_code == 200
    assert response.content == body


async def test_a_cursor_at_the_edge_of_time_is_a_validation_error(client: httpx.AsyncClient) -> None:
    account = await register(client, "edge@example.com")
    cursor = base64.urlsafe_b64encode(f"0001-01-01T00:00:00+05:00|{uuid.uuid4()}".encode()).decode().rstrip("=")
    response = await client.get(
        "/api/v1/users/me/images", params={"cursor": cursor}, headers=bearer(account["access_token"])
    )
    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("next_path", ["/%09/[x", "/%7f", "/%0a//evil.example"])
async def test_a_next_that_does_not_parse_falls_back_home(client: httpx.AsyncClient, next_path: str) -> None:
    page = await client.get(f"/login?next={next_path}")
    assert page.status_code == 200
    assert 'name="next" value="/"' in page.text


async def test_a_token_does_not_buy_a_fresh_login_budget(settings: Settings) -> None:
    """Login and registration are counted by client address, whoever is logged in."""
    limited = settings.model_copy(update={"auth_rate_limit_per_minute": 3})
    async with running_app(limited) as (_, client):
        first = await client.post("/api/v1/auth/register", json={"email": "a@example.com", "password": "x" * 12})
        assert first.status_code == 201
        token = first.json()["access_token"]
        attempts = [
            await client.post(
                "/api/v1/auth/login", json={"email": "victim@example.com", "password": "guess"}, headers=bearer(token)
            )
            for _ in range(3)
        ]
        assert [attempt.status_code for attempt in attempts] == [401, 401, 429]


async def test_an_upload_that_trickles_in_too_slowly_gets_408_and_frees_its_slot(settings: Settings) -> None:
    import anyio

    slow = settings.model_copy(update={"upload_read_timeout_seconds": 0.5, "upload_concurrency_limit": 1})

    async def trickle() -> object:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
        await anyio.sleep(3)
        yield b"\xff\xd8\xff" + b"\0" * 10

    async with running_app(slow) as (_, client):
        response = await client.post(
            "/api/v1/images/upload", content=trickle(), headers={"content-type": "multipart/form-data; boundary=b"}
        )
        assert response.status_code == 408
        assert response.json()["detail"]["code"] == "UPLOAD_TIMEOUT"
        assert (await client.get("/health")).json()["upload_concurrency"]["in_use"] == 0
        assert (await upload_ok(client))["id"]
