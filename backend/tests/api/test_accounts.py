"""Changing the password ends other sessions; deleting the account ends it all (ADR 0017)."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from app.config import Settings
from app.models import User
from tests.api.apps import running_app
from tests.api.waiting import wait_until
from tests.factories import bearer, make_distinct_jpeg, register, upload

PASSWORD = "correct horse battery"


async def test_changing_the_password_ends_every_older_token_but_not_the_keys(client: httpx.AsyncClient) -> None:
    account = await register(client, "change@example.com")
    other_session = (
        await client.post("/api/v1/auth/login", json={"email": "change@example.com", "password": PASSWORD})
    ).json()["access_token"]
    key = (
        await client.post(
            "/api/v1/users/me/api-keys",
            json={"name": "cli", "scopes": ["images:read"]},
            headers=bearer(account["access_token"]),
        )
    ).json()["key"]

    wrong = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": "not it at all", "new_password": "a brand new password"},
        headers=bearer(account["access_token"]),
    )
    assert (wrong.status_code, wrong.json()["detail"]["code"]) == (401, "INVALID_CREDENTIALS")
    assert (await client.get("/api/v1/auth/me", headers=bearer(other_session))).status_code == 200

    changed = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new password"},
        headers=bearer(account["access_token"]),
    )
    assert changed.status_code == 200, changed.text
    fresh = changed.json()["access_token"]
    for old in (account["access_token"], other_session):
        refused = await client.get("/api/v1/auth/me", headers=bearer(old))
        assert refused.status_code == 401
        assert "log in again" in refused.json()["detail"]["message"]
    assert (await client.get("/api/v1/auth/me", headers=bearer(fresh))).status_code == 200
    # An upload checks the old token's version when it counts against the account: refused, nothing kept.
    stale_upload = await upload(client, make_distinct_jpeg(), headers=bearer(other_session))
    assert stale_upload.status_code == 401
    assert "log in again" in stale_upload.json()["detail"]["message"]
    assert (await upload(client, make_distinct_jpeg(), headers=bearer(fresh))).status_code == 201
    listed = (await client.get("/api/v1/users/me/images", headers=bearer(fresh))).json()["items"]
    assert len(listed) == 1
    assert (await client.get("/api/v1/users/me/images", headers={"X-API-Key": key})).status_code == 200
    old_login = await client.post("/api/v1/auth/login", json={"email": "change@example.com", "password": PASSWORD})
    assert old_login.status_code == 401
    new_login = await client.post(
        "/api/v1/auth/login", json={"email": "change@example.com", "password": "a brand new password"}
    )
    assert new_login.status_code == 200


async def test_a_short_new_password_is_422(client: httpx.AsyncClient) -> None:
    account = await register(client, "short@example.com")
    response = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=bearer(account["access_token"]),
    )
    assert (response.status_code, response.json()["detail"]["code"]) == (422, "VALIDATION_ERROR")


async def test_deleting_the_account_ends_tokens_keys_and_images(settings: Settings) -> None:
    sweeping = settings.model_copy(update={"expiry_sweep_interval_seconds": 0.2})
    async with running_app(sweeping) as (app, client):
        account = await register(client, "leaving@example.com")
        headers = bearer(account["access_token"])
        key = (
            await client.post(
                "/api/v1/users/me/api-keys", json={"name": "cli", "scopes": ["images:read"]}, headers=headers
            )
        ).json()["key"]
        image = (await upload(client, make_distinct_jpeg(), headers=headers)).json()
        await client.get(f"/api/v1/images/{image['id']}")  # warm in the cache

        unconfirmed = await client.request(
            "DELETE", "/api/v1/users/me", json={"password": PASSWORD, "confirm": "yes"}, headers=headers
        )
        assert unconfirmed.status_code == 422
        wrong = await client.request(
            "DELETE", "/api/v1/users/me", json={"password": "not the password", "confirm": "DELETE"}, headers=headers
        )
        assert wrong.status_code == 401
        deleted = await client.request(
            "DELETE", "/api/v1/users/me", json={"password": PASSWORD, "confirm": "DELETE"}, headers=headers
        )
        assert deleted.status_code == 204

        assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 401
        assert (await client.get("/api/v1/auth/me", headers={"X-API-Key": key})).status_code == 401
        assert (await client.get(f"/api/v1/images/{image['id']}")).status_code == 404
        assert (await client.get(f"/api/v1/images/{image['id']}/file")).status_code == 404
        login = await client.post("/api/v1/auth/login", json={"email": "leaving@example.com", "password": PASSWORD})
        assert login.status_code == 401
        # The address is free again.
        assert (
            await client.post("/api/v1/auth/register", json={"email": "leaving@example.com", "password": PASSWORD})
        ).status_code == 201

        async def account_row_gone() -> bool | None:
            async with app.state.sessionmaker() as session:
                remaining = await session.scalar(select(User.id).where(User.id == account["user"]["id"]))
            return remaining is None or None

        await wait_until(account_row_gone, what="the deleted account's row to go after its images", within=20)
