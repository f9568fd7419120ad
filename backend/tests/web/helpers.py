"""What a web test needs: the browser's cookies, its CSRF token, a logged-in session, links on a page."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt

from app.services.tokens import ALGORITHM, ISSUER
from tests.factories import register

SESSION_COOKIE = "chitram_session"
CSRF_COOKIE = "chitram_csrf"
PASSWORD = "correct horse battery"
UPLOAD_TOKEN_WARNING = "Save this token! It's the only way to delete this image."
IMAGE_LINK = re.compile(r'href="/image/([0-9a-f-]{36})"')
LOAD_MORE = re.compile(r'hx-get="(/partials/gallery\?cursor=[^"]+)"')


async def csrf_token(client: httpx.AsyncClient) -> str:
    """This client's CSRF token, as a page gives it to the browser (the cookie and the form field agree)."""
    page = await client.get("/upload")
    assert page.status_code == 200, page.text
    match = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert match is not None, "the page carries no CSRF token"
    token = client.cookies.get(CSRF_COOKIE)
    assert token == match.group(1)
    return token


async def web_login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    """Log in through the form, as a browser does; the session cookie lands in the client's jar."""
    form = {"email": email, "password": password, "csrf_token": await csrf_token(client)}
    response = await client.post("/login", data=form)
    assert response.status_code == 303, response.text
    return response


async def logged_in_user(client: httpx.AsyncClient, email: str | None = None) -> tuple[str, str]:
    """Register an account through the API and log this client in through the form: (email, API token)."""
    email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
    registered = await register(client, email, PASSWORD)
    await web_login(client, email)
    return email, str(registered["access_token"])


def expired_session_token(user_id: str, secret: str) -> str:
    """A correctly signed access token whose lifetime ended an hour ago."""
    issued_at = datetime.now(UTC) - timedelta(hours=2)
    claims = {
        "sub": user_id,
        "iat": issued_at,
        "exp": issued_at + timedelta(hours=1),
        "iss": ISSUER,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def set_session_cookie(client: httpx.AsyncClient, token: str) -> None:
    """Put a session cookie in the jar where the server's own would be (so the server can delete it)."""
    client.cookies.set(SESSION_COOKIE, token, domain="testserver.local", path="/")


def set_cookie_headers(response: httpx.Response, name: str) -> list[str]:
    return [value for value in response.headers.get_list("set-cookie") if value.startswith(f"{name}=")]


def cookie_attributes(header: str) -> dict[str, str]:
    """`Set-Cookie` attributes by lower-case name (a flag maps to "")."""
    attributes: dict[str, str] = {}
    for part in header.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        attributes[name.lower()] = value
    return attributes


def image_ids(html: str) -> list[str]:
    """Ids of the images a page or fragment links to, in order (each tile links once)."""
    return IMAGE_LINK.findall(html)


def load_more_url(html: str) -> str | None:
    match = LOAD_MORE.search(html)
    return match.group(1).replace("&amp;", "&") if match else None
