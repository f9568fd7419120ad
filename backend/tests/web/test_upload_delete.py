"""Uploading, deleting and paging through the gallery as the web UI's HTMX requests do."""

from __future__ import annotations

import re

import httpx
import pytest

from app.config import Settings
from tests.api.apps import running_app
from tests.factories import bearer, make_jpeg, make_png, upload
from tests.web.helpers import UPLOAD_TOKEN_WARNING, csrf_token, image_ids, load_more_url, logged_in_user


async def _htmx_upload(
    client: httpx.AsyncClient, body: bytes, filename: str = "photo.jpg", content_type: str = "image/jpeg"
) -> httpx.Response:
    headers = {"HX-Request": "true", "X-CSRF-Token": await csrf_token(client)}
    return await client.post("/upload", files={"file": (filename, body, content_type)}, headers=headers)


async def test_anonymous_upload_shows_the_delete_token_once_with_the_warning(client: httpx.AsyncClient) -> None:
    response = await _htmx_upload(client, make_png(), "shot.png", "image/png")
    assert response.status_code == 200
    fragment = response.text
    assert UPLOAD_TOKEN_WARNING in fragment.replace("&#39;", "'")
    match = re.search(r'<input id="delete-token" type="text" readonly value="([^"]+)">', fragment)
    assert match is not None
    delete_token = match.group(1)
    assert 'data-copy-target="delete-token"' in fragment
    [image_id] = image_ids(fragment)
    page = await client.get(f"/image/{image_id}")
    assert page.status_code == 200
    assert delete_token not in page.text  # shown once, never again
    deleted = await client.delete(f"/api/v1/images/{image_id}", headers={"X-Delete-Token": delete_token})
    assert deleted.status_code == 204


async def test_logged_in_upload_goes_to_the_image_page(client: httpx.AsyncClient) -> None:
    _, token = await logged_in_user(client)
    response = await _htmx_upload(client, make_jpeg(), "mine.jpg")
    assert response.status_code == 200
    destination = response.headers["hx-redirect"]
    image_id = destination.removeprefix("/image/")
    assert re.fullmatch(r"[0-9a-f-]{36}", image_id)
    page = await client.get(destination)
    assert "mine.jpg" in page.text
    assert 'class="button danger"' in page.text  # its owner may delete it
    mine = await client.get("/api/v1/users/me/images", headers=bearer(token))
    assert [item["id"] for item in mine.json()["items"]] == [image_id]


@pytest.mark.parametrize(
    ("body", "filename", "content_type", "status", "message"),
    [
        (b"just some text", "notes.txt", "text/plain", 400, "Upload failed:"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "broken.jpg", "image/jpeg", 400, "Upload failed:"),
    ],
)
async def test_a_rejected_upload_is_explained_in_words(
    client: httpx.AsyncClient, body: bytes, filename: str, content_type: str, status: int, message: str
) -> None:
    response = await _htmx_upload(client, body, filename, content_type)
    assert response.status_code == status
    assert response.text.startswith(f'<p class="error" role="alert">{message} ')
    assert "{" not in response.text  # no JSON, no "[object Object]"


async def test_a_too_large_upload_is_explained_in_words(settings: Settings) -> None:
    small_limit = settings.model_copy(update={"max_file_size_mb": 0.01})
    async with running_app(small_limit) as (_, client):
        response = await _htmx_upload(client, make_jpeg(400, 400) + b"\x00" * 20_000)
        assert response.status_code == 413
        assert response.text.startswith('<p class="error" role="alert">Upload failed: ')


async def test_anonymous_upload_when_disabled_asks_to_log_in(settings: Settings) -> None:
    members_only = settings.model_copy(update={"allow_anonymous_uploads": False})
    async with running_app(members_only) as (_, client):
        page = await client.get("/upload")
        assert 'href="/login?next=/upload"' in page.text
        assert 'id="upload-form"' not in page.text
        response = await _htmx_upload(client, make_jpeg())
        assert response.status_code == 401
        assert "Log in to upload." in response.text


async def _anonymous_image(client: httpx.AsyncClient) -> dict[str, str]:
    created = (await upload(client, make_jpeg())).json()
    return {"id": created["id"], "delete_token": created["delete_token"]}


async def test_delete_form_with_the_delete_token_deletes_the_image(client: httpx.AsyncClient) -> None:
    image = await _anonymous_image(client)
    form = {"csrf_token": await csrf_token(client), "delete_token": image["delete_token"]}
    response = await client.post(f"/image/{image['id']}/delete", data=form)
    assert response.status_code == 303
    assert response.headers["location"] == "/?deleted=1"
    assert "The image was deleted." in (await client.get("/?deleted=1")).text
    assert (await client.get(f"/image/{image['id']}")).status_code == 404


async def test_htmx_delete_with_the_delete_token_redirects_home(client: httpx.AsyncClient) -> None:
    image = await _anonymous_image(client)
    token = await csrf_token(client)
    form = {"csrf_token": token, "delete_token": image["delete_token"]}
    response = await client.post(
        f"/image/{image['id']}/delete", data=form, headers={"HX-Request": "true", "X-CSRF-Token": token}
    )
    assert response.status_code == 200
    assert response.headers["hx-redirect"] == "/?deleted=1"
    assert (await client.get(f"/api/v1/images/{image['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("delete_token", "message"),
    [("wrong-token", "The delete token does not match this image."), ("", "Enter the image&#39;s delete token.")],
)
@pytest.mark.parametrize("from_htmx", [True, False])
async def test_delete_form_with_a_wrong_token_shows_an_error_and_keeps_the_image(
    client: httpx.AsyncClient, delete_token: str, message: str, from_htmx: bool
) -> None:
    image = await _anonymous_image(client)
    token = await csrf_token(client)
    headers = {"HX-Request": "true", "X-CSRF-Token": token} if from_htmx else {}
    form = {"csrf_token": token, "delete_token": delete_token}
    response = await client.post(f"/image/{image['id']}/delete", data=form, headers=headers)
    assert response.status_code == 403
    assert f'<p class="error" role="alert">{message}</p>' in response.text
    assert ("<html" in response.text) is not from_htmx  # a fragment for HTMX, a whole page for a plain form
    assert (await client.get(f"/api/v1/images/{image['id']}")).status_code == 200


async def test_owner_deletes_through_the_form_and_lands_on_my_images(client: httpx.AsyncClient) -> None:
    _, api_token = await logged_in_user(client)
    created = (await upload(client, make_jpeg(), headers=bearer(api_token))).json()
    token = await csrf_token(client)
    response = await client.post(
        f"/image/{created['id']}/delete", data={"csrf_token": token}, headers={"HX-Request": "true"}
    )
    assert response.headers["hx-redirect"] == "/my-images?deleted=1"
    my_images = await client.get("/my-images?deleted=1")
    assert "The image was deleted." in my_images.text
    assert created["id"] not in my_images.text


async def test_someone_else_cannot_delete_an_owned_image_through_the_form(client: httpx.AsyncClient) -> None:
    _, owner_token = await logged_in_user(client, "owner@example.com")
    created = (await upload(client, make_jpeg(), headers=bearer(owner_token))).json()
    client.cookies.clear()
    await logged_in_user(client, "intruder@example.com")
    form = {"csrf_token": await csrf_token(client)}
    response = await client.post(f"/image/{created['id']}/delete", data=form, headers={"HX-Request": "true"})
    assert response.status_code == 403
    assert "This image belongs to another account." in response.text
    assert (await client.get(f"/api/v1/images/{created['id']}")).status_code == 200


async def test_deleting_a_deleted_image_says_so(client: httpx.AsyncClient) -> None:
    image = await _anonymous_image(client)
    await client.delete(f"/api/v1/images/{image['id']}", headers={"X-Delete-Token": image["delete_token"]})
    form = {"csrf_token": await csrf_token(client), "delete_token": image["delete_token"]}
    response = await client.post(f"/image/{image['id']}/delete", data=form, headers={"HX-Request": "true"})
    assert response.status_code == 404
    assert response.text.strip() == '<p class="error" role="alert">This image no longer exists.</p>'


async def test_gallery_pages_forward_without_duplicates_and_ends_without_load_more(
    client: httpx.AsyncClient,
) -> None:
    _, token = await logged_in_user(client)
    uploaded = [(await upload(client, make_jpeg(8, 8), headers=bearer(token))).json()["id"] for _ in range(45)]
    home = (await client.get("/")).text
    seen = image_ids(home)
    assert len(seen) == 20
    next_url = load_more_url(home)
    fragments = 0
    while next_url is not None:
        response = await client.get(next_url, headers={"HX-Request": "true"})
        assert response.status_code == 200
        assert "<html" not in response.text  # a fragment, swapped in place of the button
        seen += image_ids(response.text)
        next_url = load_more_url(response.text)
        fragments += 1
    assert fragments == 2
    assert "Load more" not in response.text
    assert len(seen) == len(set(seen)) == 45
    assert seen == list(reversed(uploaded))  # newest first


async def test_a_forged_gallery_cursor_is_refused(client: httpx.AsyncClient) -> None:
    await logged_in_user(client)
    response = await client.get("/partials/gallery", params={"cursor": "not-a-cursor"})
    assert response.status_code == 422
