"""CSRF: every state-changing form and HTMX request, and cookie-authenticated API calls, prove their origin."""

from __future__ import annotations

import httpx
import pytest

from tests.error_checks import without_request_id
from tests.factories import UPLOAD_URL, bearer, make_jpeg, register, upload
from tests.web.helpers import CSRF_COOKIE, PASSWORD, csrf_token, logged_in_user

REFUSAL = "The form has expired or did not come from this site; reload the page and try again."
WRONG_TOKEN = "forged-token-forged-token-forged-token-00"
FORMS = ["/login", "/register", "/logout", "/upload", "/image/{image_id}/delete"]


async def _form_for(client: httpx.AsyncClient, path: str) -> tuple[str, dict[str, str], dict[str, object]]:
    """The URL, fields and files of a valid submission of the form at `path`, minus its CSRF token."""
    if path == "/upload":
        return path, {}, {"files": {"file": ("photo.jpg", make_jpeg(), "image/jpeg")}}
    if path.startswith("/image/"):
        created = (await upload(client, make_jpeg())).json()
        return path.format(image_id=created["id"]), {"delete_token": created["delete_token"]}, {}
    fields = {"email": "csrf@example.com", "password": PASSWORD}
    if path == "/login":
        await register(client, "csrf@example.com")
    return path, fields, {}


@pytest.mark.parametrize("path", FORMS)
@pytest.mark.parametrize("presented", ["missing", "wrong", "no-cookie"])
async def test_state_changing_forms_refuse_a_request_without_the_csrf_token(
    client: httpx.AsyncClient, path: str, presented: str
) -> None:
    url, fields, extra = await _form_for(client, path)
    real_token = await csrf_token(client)
    headers: dict[str, str] = {}
    if presented == "wrong":
        fields["csrf_token"] = WRONG_TOKEN
        headers["X-CSRF-Token"] = WRONG_TOKEN
    elif presented == "no-cookie":
        # A forged page knows a token but the browser's cookie does not match it (it has none).
        client.cookies.delete(CSRF_COOKIE)
        fields["csrf_token"] = real_token
        headers["X-CSRF-Token"] = real_token
    response = await client.post(url, data=fields, headers=headers, **extra)  # type: ignore[arg-type]
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")  # a person reads it: words, not JSON
    assert REFUSAL in response.text
    assert "set-cookie" not in response.headers or "chitram_session=" not in response.headers["set-cookie"]


@pytest.mark.parametrize("path", FORMS)
async def test_state_changing_forms_accept_the_csrf_token(client: httpx.AsyncClient, path: str) -> None:
    url, fields, extra = await _form_for(client, path)
    token = await csrf_token(client)
    fields["csrf_token"] = token
    response = await client.post(url, data=fields, headers={"X-CSRF-Token": token}, **extra)  # type: ignore[arg-type]
    assert response.status_code in {200, 303}, response.text


async def test_an_htmx_request_refused_for_csrf_gets_a_fragment_in_words(client: httpx.AsyncClient) -> None:
    await csrf_token(client)
    response = await client.post(
        "/upload",
        files={"file": ("photo.jpg", make_jpeg(), "image/jpeg")},
        headers={"HX-Request": "true", "X-CSRF-Token": WRONG_TOKEN},
    )
    assert response.status_code == 403
    assert response.text.strip() == f'<p class="error" role="alert">{REFUSAL}</p>'


async def test_a_cookie_authenticated_api_delete_needs_the_csrf_header(client: httpx.AsyncClient) -> None:
    _, token = await logged_in_user(client)
    created = (await upload(client, make_jpeg(), headers=bearer(token))).json()
    refused = await client.delete(f"/api/v1/images/{created['id']}")
    assert refused.status_code == 403
    assert refused.json()["detail"]["code"] == "FORBIDDEN"  # the API keeps its JSON envelope
    assert without_request_id(refused.json()["detail"]["details"]) == {"reason": "csrf"}
    forged = await client.delete(f"/api/v1/images/{created['id']}", headers={"X-CSRF-Token": WRONG_TOKEN})
    assert forged.status_code == 403
    assert (await client.get(f"/api/v1/images/{created['id']}")).status_code == 200
    accepted = await client.delete(
        f"/api/v1/images/{created['id']}", headers={"X-CSRF-Token": await csrf_token(client)}
    )
    assert accepted.status_code == 204
    assert (await client.get(f"/api/v1/images/{created['id']}")).status_code == 404


async def test_a_cookie_authenticated_api_upload_needs_the_csrf_header(client: httpx.AsyncClient) -> None:
    await logged_in_user(client)
    refused = await upload(client, make_jpeg())
    assert refused.status_code == 403
    assert without_request_id(refused.json()["detail"]["details"]) == {"reason": "csrf"}
    accepted = await upload(client, make_jpeg(), headers={"X-CSRF-Token": await csrf_token(client)})
    assert accepted.status_code == 201
    assert accepted.json()["delete_token"] is None  # owned by the cookie's user
    assert accepted.json()["id"] in (await client.get("/my-images")).text


async def test_bearer_authenticated_api_calls_need_no_csrf_token(client: httpx.AsyncClient) -> None:
    registered = await register(client, "bearer@example.com")
    client.cookies.clear()
    headers = bearer(registered["access_token"])
    created = await client.post(UPLOAD_URL, files={"file": ("photo.jpg", make_jpeg(), "image/jpeg")}, headers=headers)
    assert created.status_code == 201
    deleted = await client.delete(f"/api/v1/images/{created.json()['id']}", headers=headers)
    assert deleted.status_code == 204


async def test_a_bearer_token_beside_a_session_cookie_needs_no_csrf_token(client: httpx.AsyncClient) -> None:
    _, token = await logged_in_user(client)
    created = await upload(client, make_jpeg(), headers=bearer(token))
    assert created.status_code == 201
    assert (await client.delete(f"/api/v1/images/{created.json()['id']}", headers=bearer(token))).status_code == 204


async def test_anonymous_api_calls_need_no_csrf_token(client: httpx.AsyncClient) -> None:
    created = (await upload(client, make_jpeg())).json()
    deleted = await client.delete(
        f"/api/v1/images/{created['id']}", headers={"X-Delete-Token": created["delete_token"]}
    )
    assert deleted.status_code == 204
