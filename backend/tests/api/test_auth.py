"""Accounts: registration, login, tokens and who-am-I."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from app.config import Settings
from tests.error_checks import without_request_id
from tests.factories import bearer, register

PASSWORD = "correct horse battery"


async def test_register_returns_the_user_and_a_working_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/register", json={"email": "Ada@Example.com", "password": PASSWORD})
    assert response.status_code == 201
    body = response.json()
    assert body["token_type"] == "bearer"
    assert set(body["user"]) == {"id", "email", "is_active", "created_at"}
    assert body["user"]["email"] == "ada@example.com"
    assert body["user"]["is_active"] is True
    assert PASSWORD not in response.text
    me = await client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json() == body["user"]


async def test_email_is_taken_whatever_its_case(client: httpx.AsyncClient) -> None:
    await register(client, "grace@example.com")
    again = await client.post("/api/v1/auth/register", json={"email": "GRACE@example.COM", "password": PASSWORD})
    assert again.status_code == 409
    assert again.json()["detail"]["code"] == "EMAIL_EXISTS"


async def test_two_racing_registrations_give_one_account_and_one_409(client: httpx.AsyncClient) -> None:
    payload = {"email": "race@example.com", "password": PASSWORD}
    first, second = await asyncio.gather(
        client.post("/api/v1/auth/register", json=payload), client.post("/api/v1/auth/register", json=payload)
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409]
    loser = first if first.status_code == 409 else second
    assert loser.json()["detail"]["code"] == "EMAIL_EXISTS"


@pytest.mark.parametrize(
    ("password", "status"),
    [("short12", 422), ("x" * 8, 201), ("x" * 128, 201), ("x" * 129, 422), ("密码是八个字符吗", 201), ("🔑" * 8, 201)],
)
async def test_password_must_be_8_to_128_characters_of_any_kind(
    client: httpx.AsyncClient, password: str, status: int
) -> None:
    response = await client.post("/api/v1/auth/register", json={"email": "len@example.com", "password": password})
    assert response.status_code == status
    if status == 422:
        detail = response.json()["detail"]
        assert detail["code"] == "VALIDATION_ERROR"
        assert password not in response.text  # rejected input is never echoed


async def test_invalid_email_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/register", json={"email": "not-an-email", "password": PASSWORD})
    assert response.status_code == 422
    assert response.json()["detail"]["details"]["errors"][0]["loc"] == ["body", "email"]


async def test_login_accepts_any_case_of_the_email(client: httpx.AsyncClient) -> None:
    await register(client, "linus@example.com")
    response = await client.post("/api/v1/auth/login", json={"email": "LINUS@example.com", "password": PASSWORD})
    assert response.status_code == 200
    assert response.json()["user"]["email"] == "linus@example.com"


@pytest.mark.parametrize(
    ("email", "password"), [("known@example.com", "wrong password!"), ("nobody@example.com", PASSWORD)]
)
async def test_wrong_password_and_unknown_email_look_the_same(
    client: httpx.AsyncClient, email: str, password: str
) -> None:
    await register(client, "known@example.com")
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 401
    detail = response.json()["detail"]
    assert {**detail, "details": without_request_id(detail["details"])} == {
        "code": "INVALID_CREDENTIALS",
        "message": "Incorrect email or password.",
        "details": {},
    }


async def test_an_email_with_a_nul_is_just_unknown_to_login_and_the_token_form(client: httpx.AsyncClient) -> None:
    """PostgreSQL cannot compare text with a NUL in it: that was a 500 (found by schemathesis)."""
    await register(client, "nul@example.com")
    login = await client.post("/api/v1/auth/login", json={"email": "nul@example.com\x00", "password": PASSWORD})
    token = await client.post("/api/v1/auth/token", data={"username": "nul\x00@example.com", "password": PASSWORD})
    for response in (login, token):
        assert response.status_code == 401
        assert response.json()["detail"]["code"] == "INVALID_CREDENTIALS"


async def test_oauth2_token_form_works_for_swagger_authorize(client: httpx.AsyncClient) -> None:
    await register(client, "swagger@example.com")
    response = await client.post("/api/v1/auth/token", data={"username": "swagger@example.com", "password": PASSWORD})
    assert response.status_code == 200
    token = response.json()["access_token"]
    assert response.json()["token_type"] == "bearer"
    assert (await client.get("/api/v1/auth/me", headers=bearer(token))).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert any(
        scheme.get("flows", {}).get("password", {}).get("tokenUrl") == "/api/v1/auth/token"
        for scheme in schemes.values()
    )


async def test_me_without_a_token_is_401_with_www_authenticate(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "UNAUTHORIZED"
    assert response.headers["www-authenticate"] == "Bearer"


def _token(settings: Settings, **claims: object) -> str:
    now = datetime.now(UTC)
    base: dict[str, object] = {"sub": str(uuid.uuid4()), "iat": now, "exp": now + timedelta(hours=1), "iss": "chitram"}
    base.update(claims)
    return jwt.encode(base, str(settings.jwt_secret_key), algorithm="HS256")


async def test_expired_token_is_token_expired(client: httpx.AsyncClient, settings: Settings) -> None:
    user = (await register(client, "old@example.com"))["user"]
    past = datetime.now(UTC) - timedelta(hours=2)
    token = _token(settings, sub=user["id"], iat=past, exp=past + timedelta(hours=1))
    response = await client.get("/api/v1/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "TOKEN_EXPIRED"
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("kind", ["garbage", "other-secret", "alg-none", "no-exp", "deleted-user", "wrong-issuer"])
async def test_bad_tokens_are_unauthorized(client: httpx.AsyncClient, settings: Settings, kind: str) -> None:
    tokens = {
        "garbage": "not.a.jwt",
        "other-secret": jwt.encode({"sub": str(uuid.uuid4())}, "another-secret-of-sufficient-length-123", "HS256"),
        "alg-none": jwt.encode({"sub": str(uuid.uuid4()), "iss": "chitram"}, None, algorithm="none"),
        "no-exp": jwt.encode({"sub": str(uuid.uuid4()), "iss": "chitram", "iat": 1}, str(settings.jwt_secret_key)),
        "deleted-user": _token(settings),
        "wrong-issuer": _token(settings, iss="someone-else"),
    }
    response = await client.get("/api/v1/auth/me", headers=bearer(tokens[kind]))
    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "UNAUTHORIZED"
