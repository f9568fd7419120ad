"""Two people registering the same email through the form at once: one account, one clear refusal."""

from __future__ import annotations

import asyncio

import httpx

from tests.web.helpers import PASSWORD, csrf_token


async def test_racing_web_registrations_give_one_account_and_a_409_page(client: httpx.AsyncClient) -> None:
    form = {"email": "race-web@example.com", "password": PASSWORD, "csrf_token": await csrf_token(client)}
    first, second = await asyncio.gather(client.post("/register", data=form), client.post("/register", data=form))
    assert sorted([first.status_code, second.status_code]) == [303, 409]
    refused = first if first.status_code == 409 else second
    assert "already exists" in refused.text
    login = await client.post("/api/v1/auth/login", json={"email": "race-web@example.com", "password": PASSWORD})
    assert login.status_code == 200
