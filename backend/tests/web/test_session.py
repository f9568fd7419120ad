"""Logging in and out in the browser: the session cookie, `?next=`, errors in words, expired sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.config import Settings
from tests.api.apps import running_app
from tests.factories import register
from tests.web.helpers import (
    PASSWORD,
    SESSION_COOKIE,
    cookie_attributes,
    csrf_token,
    expired_session_token,
    logged_in_user,
    set_cookie_headers,
    set_session_cookie,
    web_login,
)


async def test_login_sets_an_httponly_lax_session_cookie_that_lives_as_long_as_the_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client, "alice@example.com")
    response = await web_login(client, "alice@example.com")
    assert response.headers["location"] == "/"
    [cookie] = set_cookie_headers(response, SESSION_COOKIE)
    attributes = cookie_attributes(cookie)
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "lax"
    assert attributes["path"] == "/"
    assert "secure" not in attributes  # development serves plain HTTP
    assert int(attributes["max-age"]) == settings.jwt_expire_minutes * 60
    # The cookie holds a token the API accepts too.
    token = client.cookies.get(SESSION_COOKIE)
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["email"] == "alice@example.com"


@pytest.fixture
async def production_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    production = settings.model_copy(update={"app_env": "production", "jwt_secret_key": "x" * 40})
    async with running_app(production) as (_, client):
        yield client


async def test_production_cookies_are_secure(production_client: httpx.AsyncClient) -> None:
    await register(production_client, "prod@example.com")
    page = await production_client.get("/login")
    [csrf_cookie] = set_cookie_headers(page, "chitram_csrf")
    assert "secure" in cookie_attributes(csrf_cookie)
    token = page.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    # httpx keeps Secure cookies away from http://, so the form carries what a browser would send.
    production_client.cookies.set("chitram_csrf", token)
    form = {"email": "prod@example.com", "password": PASSWORD, "csrf_token": token}
    response = await production_client.post("/login", data=form)
    assert response.status_code == 303, response.text
    [cookie] = set_cookie_headers(response, SESSION_COOKIE)
    attributes = cookie_attributes(cookie)
    assert "secure" in attributes
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "lax"
    assert int(attributes["max-age"]) == 1440 * 60


@pytest.mark.parametrize("target", ["/upload", "/my-images?deleted=1", "/image/abc"])
async def test_login_follows_a_local_next(client: httpx.AsyncClient, target: str) -> None:
    await register(client, "next@example.com")
    form = {"email": "next@example.com", "password": PASSWORD, "csrf_token": await csrf_token(client), "next": target}
    response = await client.post("/login", data=form)
    assert response.status_code == 303
    assert response.headers["location"] == target


@pytest.mark.parametrize(
    "target", ["//evil.com", "https://evil.com", "/\\evil.com", "http:/evil.com", "evil.com", "/\t/evil.com", ""]
)
async def test_login_never_redirects_off_site(client: httpx.AsyncClient, target: str) -> None:
    await register(client, "careful@example.com")
    page = await client.get("/login", params={"next": target})
    assert "evil.com" not in page.text  # not even carried in the form's hidden field
    form = {
        "email": "careful@example.com",
        "password": PASSWORD,
        "csrf_token": await csrf_token(client),
        "next": target,
    }
    response = await client.post("/login", data=form)
    assert response.status_code == 303
    assert response.headers["location"] == "/"


async def test_the_login_page_carries_next_into_its_form(client: httpx.AsyncClient) -> None:
    page = await client.get("/login", params={"next": "/my-images"})
    assert 'name="next" value="/my-images"' in page.text
    assert 'href="/register?next=/my-images"' in page.text


async def test_wrong_password_shows_the_error_on_the_login_page(client: httpx.AsyncClient) -> None:
    await register(client, "bob@example.com")
    form = {"email": "bob@example.com", "password": "not the password", "csrf_token": await csrf_token(client)}
    response = await client.post("/login", data=form)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert '<p class="error" role="alert">Incorrect email or password.</p>' in response.text
    assert 'value="bob@example.com"' in response.text  # the email is kept, the password is not
    assert "not the password" not in response.text
    assert not set_cookie_headers(response, SESSION_COOKIE)


async def test_register_logs_the_new_account_in(client: httpx.AsyncClient) -> None:
    form = {"email": "new@example.com", "password": PASSWORD, "csrf_token": await csrf_token(client), "next": "/upload"}
    response = await client.post("/register", data=form)
    assert response.status_code == 303
    assert response.headers["location"] == "/upload"
    assert "httponly" in cookie_attributes(set_cookie_headers(response, SESSION_COOKIE)[0])
    assert "new@example.com" in (await client.get("/")).text


@pytest.mark.parametrize(
    ("email", "password", "status", "message"),
    [
        ("not-an-email", PASSWORD, 422, "email: value is not a valid email address"),
        ("short@example.com", "short", 422, "password: String should have at least 8 characters"),
        ("taken@example.com", PASSWORD, 409, "An account with this email already exists."),
    ],
)
async def test_register_shows_what_is_wrong(
    client: httpx.AsyncClient, email: str, password: str, status: int, message: str
) -> None:
    await register(client, "taken@example.com")
    form = {"email": email, "password": password, "csrf_token": await csrf_token(client)}
    response = await client.post("/register", data=form)
    assert response.status_code == status
    assert '<p class="error" role="alert">' in response.text
    assert message in response.text
    assert f'value="{email}"' in response.text
    assert not set_cookie_headers(response, SESSION_COOKIE)


async def test_logout_clears_the_session_cookie(client: httpx.AsyncClient) -> None:
    await logged_in_user(client)
    response = await client.post("/logout", data={"csrf_token": await csrf_token(client)})
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    [cookie] = set_cookie_headers(response, SESSION_COOKIE)
    assert cookie_attributes(cookie)["max-age"] == "0"
    assert client.cookies.get(SESSION_COOKIE) is None
    home = await client.get("/")
    assert "Share images in seconds" in home.text
    assert (await client.get("/my-images")).status_code == 303


@pytest.mark.parametrize("path", ["/", "/my-images", "/upload"])
async def test_an_expired_session_leads_to_the_login_page(
    client: httpx.AsyncClient, settings: Settings, path: str
) -> None:
    registered = await register(client, "expired@example.com")
    assert settings.jwt_secret_key is not None
    set_session_cookie(client, expired_session_token(registered["user"]["id"], settings.jwt_secret_key))
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"
    [cookie] = set_cookie_headers(response, SESSION_COOKIE)
    assert cookie_attributes(cookie)["max-age"] == "0"
    login_page = await client.get(response.headers["location"])
    assert login_page.status_code == 200
    assert "<h1>Log in</h1>" in login_page.text


async def test_an_expired_session_on_an_htmx_request_answers_with_hx_redirect(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    registered = await register(client, "expired-htmx@example.com")
    assert settings.jwt_secret_key is not None
    set_session_cookie(client, expired_session_token(registered["user"]["id"], settings.jwt_secret_key))
    headers = {"HX-Request": "true", "HX-Current-URL": "http://testserver/my-images"}
    response = await client.get("/partials/gallery", headers=headers)
    # Back to the page the person was on after logging in, not to the fragment HTMX asked for.
    assert response.headers["hx-redirect"] == "/login?next=/my-images"
    assert "location" not in response.headers  # HTMX would follow a 3xx silently and swap the login page in


@pytest.mark.parametrize(
    ("headers", "next_path"),
    [
        ({}, "/"),
        ({"HX-Request": "true"}, "/"),
        ({"HX-Request": "true", "HX-Current-URL": "https://evil.example//evil.com"}, "/"),
        ({"HX-Request": "true", "HX-Current-URL": "http://testserver/?deleted=1"}, "/%3Fdeleted%3D1"),
    ],
)
async def test_an_expired_session_never_sends_the_login_back_to_a_fragment(
    client: httpx.AsyncClient, settings: Settings, headers: dict[str, str], next_path: str
) -> None:
    registered = await register(client, "expired-fragment@example.com")
    assert settings.jwt_secret_key is not None
    set_session_cookie(client, expired_session_token(registered["user"]["id"], settings.jwt_secret_key))
    response = await client.get("/partials/gallery", headers=headers)
    destination = response.headers.get("hx-redirect") or response.headers["location"]
    assert destination == f"/login?next={next_path}"


async def test_a_forged_session_cookie_is_not_a_session(client: httpx.AsyncClient) -> None:
    set_session_cookie(client, "not.a.token")
    response = await client.get("/my-images")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


async def test_an_expired_session_on_the_login_page_keeps_its_next(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    registered = await register(client, "expired-login@example.com")
    assert settings.jwt_secret_key is not None
    set_session_cookie(client, expired_session_token(registered["user"]["id"], settings.jwt_secret_key))
    response = await client.get("/login", params={"next": "/upload"})
    assert response.headers["location"] == "/login?next=/upload"
    assert (await client.get(response.headers["location"])).status_code == 200
