"""Who owns an image, who may delete it, and the owner's own list."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.api.web_support import CSRF_COOKIE_NAME, CSRF_HEADER_NAME
from app.config import Settings
from app.models import Image
from tests.api.helpers import bucket_keys, image_row_count, original_key_of
from tests.error_checks import without_request_id
from tests.factories import bearer, make_jpeg, register, token_of, upload, upload_ok


async def upload_as(client: httpx.AsyncClient, token: str, **kwargs: Any) -> dict[str, Any]:
    response = await upload(client, make_jpeg(), headers=bearer(token), **kwargs)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_anonymous_upload_gets_a_strong_one_time_delete_token_stored_only_as_hash(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    created = await upload_ok(client)
    token = created["delete_token"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", token)  # URL-safe, >= 256 bits
    assert "delete_token" not in (await client.get(f"/api/v1/images/{created['id']}")).json()
    async with app.state.sessionmaker() as session:
        row = await session.get(Image, uuid.UUID(created["id"]))
        assert row is not None
        assert row.delete_token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert row.owner_id is None


async def test_upload_with_a_token_belongs_to_the_user_and_has_no_delete_token(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client, "owner@example.com")
    created = await upload_as(client, account["access_token"])
    assert created["delete_token"] is None
    async with app.state.sessionmaker() as session:
        row = await session.get(Image, uuid.UUID(created["id"]))
        assert row is not None
        assert str(row.owner_id) == account["user"]["id"]
        assert row.delete_token_hash is None
    text = (await client.get(f"/api/v1/images/{created['id']}")).text
    assert "owner@example.com" not in text
    assert account["user"]["id"] not in text


async def test_upload_with_a_bad_token_is_refused_not_made_anonymous(client: httpx.AsyncClient) -> None:
    response = await upload(client, make_jpeg(), headers=bearer("not-a-token"))
    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize("gone", ["deleted", "disabled"])
async def test_upload_with_the_token_of_an_account_that_is_gone_is_refused_and_stores_nothing(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, gone: str
) -> None:
    """The token is still validly signed; the INSERT itself finds no active owner and writes nothing."""
    account = await register(client, "leaving@example.com")
    statement = (
        "DELETE FROM users WHERE id = :id" if gone == "deleted" else "UPDATE users SET is_active = false WHERE id = :id"
    )
    async with app.state.engine.begin() as connection:
        await connection.execute(text(statement), {"id": uuid.UUID(account["user"]["id"])})
    response = await upload(client, make_jpeg(), headers=bearer(account["access_token"]))
    assert response.status_code == 401
    detail = response.json()["detail"]
    assert {**detail, "details": without_request_id(detail["details"])} == {
        "code": "UNAUTHORIZED",
        "message": "The account for this token no longer exists.",
        "details": {},
    }
    assert await image_row_count(app) == 0
    assert bucket_keys(settings) == set()  # the original stored before the INSERT is gone again


async def test_an_api_upload_on_the_browsers_session_cookie_needs_the_csrf_token(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    """The upload reads its token itself: a cookie-borne token must come with our pages' CSRF token."""
    account = await register(client, "cookie@example.com")
    cookie = f"{app.state.session_cookie_name}={account['access_token']}; {CSRF_COOKIE_NAME}=csrf-value"
    refused = await upload(client, make_jpeg(), headers={"Cookie": cookie})
    assert refused.status_code == 403
    assert refused.json()["detail"]["code"] == "FORBIDDEN"
    assert await image_row_count(app) == 0
    assert bucket_keys(settings) == set()
    accepted = await upload(client, make_jpeg(), headers={"Cookie": cookie, CSRF_HEADER_NAME: "csrf-value"})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["delete_token"] is None  # owned by the cookie's account


async def test_swagger_ui_sends_the_token_with_uploads(client: httpx.AsyncClient) -> None:
    """The upload reads its token or API key itself, so its OpenAPI operation must still declare the schemes."""
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/api/v1/images/upload"]["post"]
    assert operation["security"] == [{"OAuth2PasswordBearer": []}]
    assert "OAuth2PasswordBearer" in spec["components"]["securitySchemes"]
    assert "X-API-Key" in spec["info"]["description"]
    assert operation["requestBody"]["content"]["multipart/form-data"]["schema"]["required"] == ["file"]
    assert operation["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/ImageUploaded")


async def test_anonymous_upload_is_refused_when_disabled(postgres_url: str, settings: Settings) -> None:
    from app.main import create_app

    app = create_app(settings.model_copy(update={"allow_anonymous_uploads": False}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        response = await upload(client, make_jpeg())
        assert response.status_code == 401
        assert response.json()["detail"]["code"] == "UNAUTHORIZED"


# The delete matrix: (who asks, how) x (whose image) -> answer.
@pytest.mark.parametrize(
    ("image_kind", "credentials", "status", "code"),
    [
        ("owned", "owner", 204, None),
        ("owned", "other-user", 403, "FORBIDDEN"),
        ("owned", "nobody", 401, "UNAUTHORIZED"),
        ("owned", "some-delete-token", 401, "UNAUTHORIZED"),
        ("anonymous", "right-token-header", 204, None),
        ("anonymous", "right-token-query", 204, None),
        ("anonymous", "nobody", 403, "DELETE_TOKEN_REQUIRED"),
        ("anonymous", "other-user", 403, "DELETE_TOKEN_REQUIRED"),
        ("anonymous", "wrong-token", 403, "INVALID_DELETE_TOKEN"),
        ("anonymous", "another-images-token", 403, "INVALID_DELETE_TOKEN"),
        ("anonymous", "bad-bearer", 401, "UNAUTHORIZED"),
    ],
)
async def test_delete_matrix(
    client: httpx.AsyncClient, settings: Settings, image_kind: str, credentials: str, status: int, code: str | None
) -> None:
    owner = await register(client, "owner@example.com")
    other = await register(client, "other@example.com")
    if image_kind == "owned":
        image = await upload_as(client, owner["access_token"])
    else:
        image = await upload_ok(client)
    another = await upload_ok(client)
    requests: dict[str, dict[str, Any]] = {
        "owner": {"headers": bearer(owner["access_token"])},
        "other-user": {"headers": bearer(other["access_token"])},
        "nobody": {},
        "some-delete-token": {"headers": token_of(another)},
        "right-token-header": {"headers": {"X-Delete-Token": str(image.get("delete_token"))}},
        "right-token-query": {"params": {"delete_token": str(image.get("delete_token"))}},
        "wrong-token": {"headers": {"X-Delete-Token": "x" * 43}},
        "another-images-token": {"headers": token_of(another)},
        "bad-bearer": {"headers": {**bearer("garbage"), "X-Delete-Token": str(image.get("delete_token"))}},
    }
    response = await client.delete(f"/api/v1/images/{image['id']}", **requests[credentials])
    assert response.status_code == status, response.text
    still_there = (await client.get(f"/api/v1/images/{image['id']}")).status_code == 200
    if code is None:
        assert not still_there
        assert original_key_of(image) not in bucket_keys(settings)
    else:
        assert response.json()["detail"]["code"] == code
        assert still_there
        assert original_key_of(image) in bucket_keys(settings)


async def test_delete_token_works_only_once(client: httpx.AsyncClient) -> None:
    created = await upload_ok(client)
    assert (await client.delete(f"/api/v1/images/{created['id']}", headers=token_of(created))).status_code == 204
    again = await client.delete(f"/api/v1/images/{created['id']}", headers=token_of(created))
    assert again.status_code == 404


async def test_my_images_pages_newest_first_without_gaps_or_duplicates(client: httpx.AsyncClient) -> None:
    me = await register(client, "pages@example.com")
    someone = await register(client, "someone@example.com")
    mine = [(await upload_as(client, me["access_token"]))["id"] for _ in range(5)]
    await upload_as(client, someone["access_token"])
    await upload_ok(client)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/users/me/images", params=params, headers=bearer(me["access_token"]))
        assert response.status_code == 200
        body = response.json()
        seen += [item["id"] for item in body["items"]]
        assert all("delete_token" not in item for item in body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(mine))


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"cursor": "bm90LWEtY3Vyc29y"}, {"cursor": "!!"}])
async def test_my_images_rejects_bad_paging_parameters(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    me = await register(client, "params@example.com")
    response = await client.get("/api/v1/users/me/images", params=params, headers=bearer(me["access_token"]))
    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "VALIDATION_ERROR"


async def test_my_images_needs_a_login(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users/me/images")
    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "UNAUTHORIZED"
