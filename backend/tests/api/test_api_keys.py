"""API keys: made once, stored hashed, scoped, listed without secrets, revoked at once (ADR 0017)."""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import select

from app.config import Settings
from app.models import ApiKey
from tests.conftest import _truncate_tables
from tests.factories import bearer, make_distinct_jpeg, register, upload
from tests.servers import app_servers

ALL_SCOPES = ["images:read", "images:upload", "images:delete"]
KEYS_URL = "/api/v1/users/me/api-keys"


async def create_key(
    client: httpx.AsyncClient, token: str, scopes: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"name": "ShareX on the laptop", "scopes": scopes or ALL_SCOPES, **extra}
    response = await client.post(KEYS_URL, json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_a_new_key_is_shown_once_and_stored_only_as_a_hash(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await register(client, "keys@example.com")
    created = await create_key(client, account["access_token"])
    key = created["key"]
    assert re.fullmatch(r"chk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", key)
    assert created["prefix"] == key[: len("chk_") + 16]
    assert created["scopes"] == ALL_SCOPES
    assert (created["last_used_at"], created["expires_at"]) == (None, None)

    listed = (await client.get(KEYS_URL, headers=bearer(account["access_token"]))).json()["items"]
    assert [item["id"] for item in listed] == [created["id"]]
    assert "key" not in listed[0]
    assert key[len(created["prefix"]) + 1 :] not in str(listed)  # the secret may itself hold "_"

    async with app.state.sessionmaker() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.id == uuid.UUID(created["id"])))
    assert row is not None
    secret = key.split("_", 2)[2]
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str({column.name: getattr(row, column.name) for column in ApiKey.__table__.columns})


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
async def test_a_key_uploads_lists_and_deletes_as_its_account(client: httpx.AsyncClient, header: str) -> None:
    account = await register(client, f"tool-{header}@example.com")
    key = (await create_key(client, account["access_token"]))["key"]
    headers = bearer(key) if header == "Authorization" else {"X-API-Key": key}

    uploaded = await upload(client, make_distinct_jpeg(), headers=headers)
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["delete_token"] is None  # owned by the account, not anonymous
    image_id = uploaded.json()["id"]
    mine = (await client.get("/api/v1/users/me/images", headers=bearer(account["access_token"]))).json()["items"]
    assert [item["id"] for item in mine] == [image_id]
    via_key = await client.get("/api/v1/users/me/images", headers=headers)
    assert [item["id"] for item in via_key.json()["items"]] == [image_id]
    me = await client.get("/api/v1/auth/me", headers=headers)
    assert me.json()["email"] == f"tool-{header}@example.com".lower()
    assert (await client.delete(f"/api/v1/images/{image_id}", headers=headers)).status_code == 204
    assert (await client.get(f"/api/v1/images/{image_id}")).status_code == 404


async def test_a_key_may_do_only_what_its_scopes_say(client: httpx.AsyncClient) -> None:
    account = await register(client, "scoped@example.com")
    token = account["access_token"]
    upload_only = {"X-API-Key": (await create_key(client, token, ["images:upload"]))["key"]}
    read_only = {"X-API-Key": (await create_key(client, token, ["images:read"]))["key"]}

    created = await upload(client, make_distinct_jpeg(), headers=upload_only)
    assert created.status_code == 201
    for response, required in [
        (await upload(client, make_distinct_jpeg(), headers=read_only), "images:upload"),
        (await client.get("/api/v1/users/me/images", headers=upload_only), "images:read"),
        (await client.delete(f"/api/v1/images/{created.json()['id']}", headers=read_only), "images:delete"),
    ]:
        assert response.status_code == 403, response.text
        detail = response.json()["detail"]
        assert (detail["code"], detail["details"]["required"]) == ("INSUFFICIENT_SCOPE", required)
    # Account management needs the password's holder: no key, whatever its scopes, makes keys.
    all_scopes = {"X-API-Key": (await create_key(client, token))["key"]}
    for response in [
        await client.post(KEYS_URL, json={"name": "x", "scopes": ["images:read"]}, headers=all_scopes),
        await client.get(KEYS_URL, headers=all_scopes),
        await client.post(
            "/api/v1/users/me/password",
            json={"current_password": "correct horse battery", "new_password": "another long one"},
            headers=all_scopes,
        ),
    ]:
        assert response.status_code == 403
        assert response.json()["detail"]["code"] == "INSUFFICIENT_SCOPE"


async def test_revoked_unknown_altered_and_expired_keys_are_401(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await register(client, "revoke@example.com")
    token = account["access_token"]
    created = await create_key(client, token)
    key = created["key"]
    assert (await upload(client, make_distinct_jpeg(), headers={"X-API-Key": key})).status_code == 201

    altered = key[:-1] + ("A" if key[-1] != "A" else "B")
    unknown_id = "chk_" + "0" * 16 + key[len("chk_") + 16 :]
    for bad in (altered, unknown_id, "chk_short", "chk_"):
        response = await upload(client, make_distinct_jpeg(), headers={"X-API-Key": bad})
        assert response.status_code == 401, bad
        assert response.json()["detail"]["code"] == "UNAUTHORIZED"

    revoked = await client.delete(f"{KEYS_URL}/{created['id']}", headers=bearer(token))
    assert revoked.status_code == 204
    assert (await upload(client, make_distinct_jpeg(), headers={"X-API-Key": key})).status_code == 401
    assert (await client.get(KEYS_URL, headers=bearer(token))).json()["items"] == []
    again = await client.delete(f"{KEYS_URL}/{created['id']}", headers=bearer(token))
    assert (again.status_code, again.json()["detail"]["code"]) == (404, "API_KEY_NOT_FOUND")

    expiring = await create_key(client, token, expires_in_days=1)
    assert expiring["expires_at"] is not None
    async with app.state.sessionmaker() as session:
        row = await session.get(ApiKey, uuid.UUID(expiring["id"]))
        assert row is not None
        row.expires_at = row.created_at  # its day is over
        await session.commit()
    response = await client.get("/api/v1/users/me/images", headers={"X-API-Key": expiring["key"]})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]["message"]


async def test_one_account_cannot_see_or_revoke_anothers_keys(client: httpx.AsyncClient) -> None:
    alice = await register(client, "alice-keys@example.com")
    bob = await register(client, "bob-keys@example.com")
    alices = await create_key(client, alice["access_token"])
    assert (await client.get(KEYS_URL, headers=bearer(bob["access_token"]))).json()["items"] == []
    refused = await client.delete(f"{KEYS_URL}/{alices['id']}", headers=bearer(bob["access_token"]))
    assert refused.status_code == 404
    assert (await client.get("/api/v1/auth/me", headers={"X-API-Key": alices["key"]})).status_code == 200


async def test_last_use_is_recorded(client: httpx.AsyncClient) -> None:
    account = await register(client, "used@example.com")
    created = await create_key(client, account["access_token"])
    await client.get("/api/v1/users/me/images", headers={"X-API-Key": created["key"]})
    listed = (await client.get(KEYS_URL, headers=bearer(account["access_token"]))).json()["items"]
    assert listed[0]["last_used_at"] is not None


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "scopes": ["images:read"]},
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["images:everything"]},
        {"name": "x", "scopes": ["images:read"], "expires_in_days": 0},
        {"name": "x" * 101, "scopes": ["images:read"]},
    ],
)
async def test_a_key_request_out_of_bounds_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    account = await register(client, "bounds@example.com")
    response = await client.post(KEYS_URL, json=body, headers=bearer(account["access_token"]))
    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "VALIDATION_ERROR"


async def test_a_key_never_reaches_the_log_or_the_cache(
    client: httpx.AsyncClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    account = await register(client, "quiet@example.com")
    key = (await create_key(client, account["access_token"]))["key"]
    created = (await upload(client, make_distinct_jpeg(), headers={"X-API-Key": key})).json()
    await client.get(f"/api/v1/images/{created['id']}", headers={"X-API-Key": key})
    await client.get("/api/v1/users/me/images", headers={"X-API-Key": key})
    secret = key.split("_", 2)[2]
    assert secret not in caplog.text
    assert settings.redis_url is not None
    raw_redis = Redis.from_url(settings.redis_url)
    try:
        stored = [await raw_redis.dump(name) or b"" for name in await raw_redis.keys("*")]
    finally:
        await raw_redis.aclose()
    assert stored  # the metadata was cached: there was something to look at
    assert not any(secret.encode() in value for value in stored)


async def test_revoking_takes_effect_at_once_on_every_process(settings: Settings, tmp_path: Path) -> None:
    """Two `python -m app` servers on one database, over real HTTP: a key revoked through one is refused
    by the other on the very next request (nothing about a key is cached)."""
    # Servers of their own: the `app` fixture's clean-up does not run, so the rows go here.
    try:
        with app_servers(settings, tmp_path, 2, start_timeout=120) as [(first_url, _), (second_url, _)]:
            async with httpx.AsyncClient(base_url=first_url) as first, httpx.AsyncClient(base_url=second_url) as second:
                account = await register(first, "two-processes@example.com")
                created = await create_key(first, account["access_token"])
                key = {"X-API-Key": created["key"]}
                for _ in range(3):  # warm: whatever the second process could remember, it has seen
                    assert (await second.get("/api/v1/users/me/images", headers=key)).status_code == 200
                revoked = await first.delete(f"{KEYS_URL}/{created['id']}", headers=bearer(account["access_token"]))
                assert revoked.status_code == 204
                refused = await second.get("/api/v1/users/me/images", headers=key)
                assert (refused.status_code, refused.json()["detail"]["code"]) == (401, "UNAUTHORIZED")
                assert (await upload(second, make_distinct_jpeg(), headers=key)).status_code == 401
    finally:
        await _truncate_tables(settings.database_url)
