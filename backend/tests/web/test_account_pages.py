"""The account pages without a browser: API keys, the ShareX download, password, deletion, usage, and the
image page's link-preview tags and visibility rules."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from html import unescape

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models import Image
from app.models.base import utc_now
from tests.api.apps import run_thumbnail_job, running_app, without_workers
from tests.conftest import corpus_bytes
from tests.factories import bearer, make_jpeg, make_png, register, upload
from tests.web.helpers import PASSWORD, SESSION_COOKIE, csrf_token, logged_in_user

NEW_KEY = re.compile(r'id="new-key" type="text" readonly value="(chk_[^"]+)"')
META = re.compile(r'<meta (?:property|name)="([^"]+)" content="([^"]*)">')


def meta_tags(html: str) -> dict[str, str]:
    return {name: unescape(content) for name, content in META.findall(html)}


async def create_key_through_form(client: httpx.AsyncClient, name: str = "laptop", **fields: object) -> str:
    form = {"name": name, "scopes": ["images:read", "images:upload"], "csrf_token": await csrf_token(client)}
    form.update(fields)  # type: ignore[arg-type]
    response = await client.post("/account/keys", data=form)
    assert response.status_code == 201, response.text
    match = NEW_KEY.search(response.text)
    assert match is not None
    return match.group(1)


async def test_account_pages_send_a_visitor_to_log_in(client: httpx.AsyncClient) -> None:
    for path in ("/account", "/account/keys"):
        response = await client.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next={path}"


async def test_the_navigation_links_to_the_account_and_its_keys(client: httpx.AsyncClient) -> None:
    await logged_in_user(client)
    home = await client.get("/")
    assert 'href="/account/keys"' in home.text
    assert 'href="/account"' in home.text


async def test_a_key_made_on_the_page_is_shown_once_and_works_for_uploads(client: httpx.AsyncClient) -> None:
    await logged_in_user(client)
    key = await create_key_through_form(client, "ShareX <laptop>", expires_in_days="30")
    listing = await client.get("/account/keys")
    assert key not in listing.text
    prefix = key[: len("chk_") + 16]
    assert prefix in listing.text
    assert "ShareX &lt;laptop&gt;" in listing.text
    assert "images:read, images:upload" in listing.text

    uploaded = await upload(client, make_jpeg(40, 30), headers={"X-API-Key": key})
    assert uploaded.status_code == 201, uploaded.text


async def test_a_key_form_without_scopes_or_with_a_bad_expiry_says_why(client: httpx.AsyncClient) -> None:
    await logged_in_user(client)
    token = await csrf_token(client)
    no_scopes = await client.post("/account/keys", data={"name": "tool", "csrf_token": token})
    assert no_scopes.status_code == 422
    assert "Choose at least one scope." in no_scopes.text
    assert 'value="tool"' in no_scopes.text  # what was typed stays
    bad_expiry = await client.post(
        "/account/keys", data={"name": "tool", "scopes": "images:read", "expires_in_days": "0", "csrf_token": token}
    )
    assert bad_expiry.status_code == 422
    assert "Expiry is a whole number of days from 1 to 3650." in bad_expiry.text


async def test_key_forms_need_the_csrf_token(client: httpx.AsyncClient) -> None:
    await logged_in_user(client)
    await csrf_token(client)
    refused = await client.post("/account/keys", data={"name": "tool", "scopes": "images:read"})
    assert refused.status_code == 403
    refused = await client.post("/account/keys/sharex", data={"api_key": "chk_x", "name": "x"})
    assert refused.status_code == 403


async def test_the_sharex_download_describes_an_upload_that_works(client: httpx.AsyncClient) -> None:
    await logged_in_user(client)
    key = await create_key_through_form(client, "laptop")
    response = await client.post(
        "/account/keys/sharex", data={"api_key": key, "name": "laptop", "csrf_token": await csrf_token(client)}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].startswith('attachment; filename="Chitram (laptop).sxcu"')
    assert response.headers["cache-control"] == "no-store"
    config = json.loads(response.text)
    assert config["Headers"] == {"X-API-Key": key}
    assert config["RequestURL"] == "http://testserver/api/v1/images/upload"
    # The key goes first: the browser's session cookie in the same jar plays no part.
    replayed = await client.post(
        config["RequestURL"],
        files={config["FileFormName"]: ("shot.png", make_png(20, 20), "image/png")},
        headers=config["Headers"],
    )
    assert replayed.status_code == 201, replayed.text
    link = config["URL"].replace("{json:url}", replayed.json()["url"])
    assert link.endswith(f"/api/v1/images/{replayed.json()['id']}/file")


async def test_the_sharex_download_refuses_a_key_of_another_account(client: httpx.AsyncClient) -> None:
    await logged_in_user(client)
    stranger = await register(client, f"other-{uuid.uuid4().hex[:8]}@example.com")
    created = await client.post(
        "/api/v1/users/me/api-keys",
        json={"name": "theirs", "scopes": ["images:read"]},
        headers=bearer(stranger["access_token"]),
    )
    assert created.status_code == 201, created.text
    response = await client.post(
        "/account/keys/sharex",
        data={"api_key": created.json()["key"], "name": "x", "csrf_token": await csrf_token(client)},
    )
    assert response.status_code == 404
    assert "That is not one of your API keys." in response.text


async def test_revoking_a_key_on_the_page_stops_it_at_once(client: httpx.AsyncClient) -> None:
    await logged_in_user(client)
    key = await create_key_through_form(client)
    listing = (await client.get("/account/keys")).text
    key_id = re.search(r'action="/account/keys/([0-9a-f-]{36})/revoke"', listing)
    assert key_id is not None
    form = {"csrf_token": await csrf_token(client)}
    revoked = await client.post(f"/account/keys/{key_id.group(1)}/revoke", data=form)
    assert revoked.status_code == 303
    assert revoked.headers["location"] == "/account/keys?revoked=1"
    page = await client.get("/account/keys?revoked=1")
    assert "The key was revoked." in page.text
    assert "No keys yet." in page.text
    refused = await client.get("/api/v1/users/me/images", headers={"X-API-Key": key})
    assert refused.status_code == 401


async def test_the_account_page_shows_usage_and_unlimited_quotas(client: httpx.AsyncClient) -> None:
    _, token = await logged_in_user(client)
    created = await upload(client, make_jpeg(64, 48), headers=bearer(token))
    assert created.status_code == 201
    page = await client.get("/account")
    assert page.status_code == 200
    assert "<h1>Account</h1>" in page.text
    assert re.search(r'id="usage-images">1 of unlimited<', page.text)
    assert re.search(r'id="usage-bytes">\d+ (bytes|KB) of unlimited<', page.text)


async def test_the_account_page_shows_the_quota_when_there_is_one(settings: Settings) -> None:
    limited = settings.model_copy(update={"user_quota_bytes": 10 * 1024 * 1024, "user_quota_images": 50})
    async with running_app(limited) as (_, client):
        await logged_in_user(client)
        page = await client.get("/account")
        assert 'id="usage-bytes">0 bytes of 10.0 MB<' in page.text
        assert 'id="usage-images">0 of 50<' in page.text
        assert "<meter" in page.text


async def test_changing_the_password_keeps_this_browser_and_ends_other_sessions(client: httpx.AsyncClient) -> None:
    email, old_token = await logged_in_user(client)
    old_cookie = client.cookies.get(SESSION_COOKIE)
    form = {
        "current_password": PASSWORD,
        "new_password": "a brand new passphrase",
        "confirm_password": "a brand new passphrase",
        "csrf_token": await csrf_token(client),
    }
    changed = await client.post("/account/password", data=form)
    assert changed.status_code == 303, changed.text
    assert changed.headers["location"] == "/account?password=changed"
    assert client.cookies.get(SESSION_COOKIE) != old_cookie
    page = await client.get("/account?password=changed")
    assert page.status_code == 200
    assert "Your password was changed." in page.text
    assert (await client.get("/api/v1/users/me/images", headers=bearer(old_token))).status_code == 401
    logged_in = await client.post("/api/v1/auth/login", json={"email": email, "password": "a brand new passphrase"})
    assert logged_in.status_code == 200


@pytest.mark.parametrize(
    ("current", "new", "confirm", "status", "message"),
    [
        ("not my password", "a brand new passphrase", "a brand new passphrase", 401, "The password is not correct."),
        (PASSWORD, "a new passphrase", "another passphrase", 422, "The new password and its confirmation differ."),
        (PASSWORD, "short", "short", 422, "The new password must be 8 to 128 characters long."),
    ],
)
async def test_a_refused_password_change_says_why_and_keeps_the_session(
    client: httpx.AsyncClient, current: str, new: str, confirm: str, status: int, message: str
) -> None:
    await logged_in_user(client)
    form = {"current_password": current, "new_password": new, "confirm_password": confirm}
    refused = await client.post("/account/password", data={**form, "csrf_token": await csrf_token(client)})
    assert refused.status_code == status
    assert message in refused.text
    assert (await client.get("/account")).status_code == 200


async def test_deleting_the_account_logs_out_and_its_images_are_gone(client: httpx.AsyncClient) -> None:
    email, token = await logged_in_user(client)
    image_id = (await upload(client, make_jpeg(40, 30), headers=bearer(token))).json()["id"]
    token_field = await csrf_token(client)
    confirmed = {"password": PASSWORD, "confirm": "DELETE", "csrf_token": token_field}
    wrong_word = await client.post("/account/delete", data={**confirmed, "confirm": "delete"})
    assert wrong_word.status_code == 422
    assert "Type DELETE to confirm." in wrong_word.text
    wrong_password = await client.post("/account/delete", data={**confirmed, "password": "nope"})
    assert wrong_password.status_code == 401
    assert (await client.get(f"/image/{image_id}")).status_code == 200

    deleted = await client.post("/account/delete", data=confirmed)
    assert deleted.status_code == 303
    assert deleted.headers["location"] == "/?account_deleted=1"
    assert SESSION_COOKIE not in client.cookies
    home = await client.get("/?account_deleted=1")
    assert "Your account was deleted" in home.text
    assert (await client.get(f"/image/{image_id}")).status_code == 404
    assert (await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})).status_code == 401


async def test_the_upload_form_offers_visibility_and_expiry(client: httpx.AsyncClient) -> None:
    visitor = await client.get("/upload")
    assert 'name="expires_in"' in visitor.text
    assert 'value="7d"' in visitor.text
    assert 'value="private"' not in visitor.text  # a visitor cannot upload privately
    await logged_in_user(client)
    member = await client.get("/upload")
    assert 'name="visibility" value="private"' in member.text


async def test_a_web_upload_keeps_its_visibility_and_expiry(client: httpx.AsyncClient) -> None:
    await logged_in_user(client)
    uploaded = await client.post(
        "/upload",
        files={"file": ("secret.jpg", make_jpeg(40, 30), "image/jpeg")},
        data={"visibility": "private", "expires_in": "1d"},
        headers={"X-CSRF-Token": await csrf_token(client), "HX-Request": "true"},
    )
    assert uploaded.status_code == 200, uploaded.text
    page_path = uploaded.headers["hx-redirect"]
    page = await client.get(page_path)
    assert "Private: only you" in page.text
    assert re.search(r"In (23 hours|1 day) \(", page.text)
    gallery = await client.get("/my-images")
    assert 'class="badge badge-private"' in gallery.text
    assert "Expires in" in gallery.text


async def test_an_anonymous_private_upload_is_refused_in_words(client: httpx.AsyncClient) -> None:
    refused = await client.post(
        "/upload",
        files={"file": ("secret.jpg", make_jpeg(40, 30), "image/jpeg")},
        data={"visibility": "private"},
        headers={"X-CSRF-Token": await csrf_token(client), "HX-Request": "true"},
    )
    assert refused.status_code == 401
    assert "Private uploads need a login" in refused.text


async def test_an_unlisted_image_page_carries_link_preview_tags(client: httpx.AsyncClient) -> None:
    created = (await upload(client, make_jpeg(1600, 1000), "beach.jpg")).json()
    page = await client.get(f"/image/{created['id']}")
    tags = meta_tags(page.text)
    base = str(client.base_url).rstrip("/")
    assert tags["og:type"] == "website"
    assert tags["og:title"] == "beach.jpg"
    assert tags["og:url"] == f"{base}/image/{created['id']}"
    assert tags["og:image"] == f"{base}/api/v1/images/{created['id']}/file?w=1200"
    assert (tags["og:image:width"], tags["og:image:height"]) == ("1200", "750")
    assert tags["og:image:type"] == "image/jpeg"
    assert tags["twitter:card"] == "summary_large_image"
    assert tags["twitter:image"] == tags["og:image"]
    assert "robots" not in tags


async def test_a_small_image_previews_as_its_original(client: httpx.AsyncClient) -> None:
    created = (await upload(client, make_png(300, 200), "small.png")).json()
    tags = meta_tags((await client.get(f"/image/{created['id']}")).text)
    assert tags["og:image"].endswith(f"/api/v1/images/{created['id']}/file")
    assert (tags["og:image:width"], tags["og:image:height"], tags["og:image:type"]) == ("300", "200", "image/png")


async def test_a_private_image_page_leaks_no_picture_and_is_hidden_from_others(client: httpx.AsyncClient) -> None:
    await logged_in_user(client)
    uploaded = await client.post(
        "/upload",
        files={"file": ("secret.jpg", make_jpeg(1600, 1000), "image/jpeg")},
        data={"visibility": "private"},
        headers={"X-CSRF-Token": await csrf_token(client), "HX-Request": "true"},
    )
    page_path = uploaded.headers["hx-redirect"]
    owner_view = await client.get(page_path)
    assert owner_view.status_code == 200
    tags = meta_tags(owner_view.text)
    assert "og:image" not in tags
    assert "twitter:image" not in tags
    assert tags["robots"] == "noindex"
    assert "Share link" in owner_view.text
    client.cookies.delete(SESSION_COOKIE)
    assert (await client.get(page_path)).status_code == 404


async def test_an_expiring_image_is_noindex_and_gone_for_everyone_once_expired(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, token = await logged_in_user(client)
    created = await client.post(
        "/api/v1/images/upload",
        files={"file": ("soon.jpg", make_jpeg(40, 30), "image/jpeg")},
        data={"expires_in": "1h"},
        headers=bearer(token),
    )
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    tags = meta_tags((await client.get(f"/image/{image_id}")).text)
    assert tags["robots"] == "noindex"
    assert "og:image" in tags
    sessionmaker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    async with sessionmaker() as session:
        await session.execute(
            update(Image).where(Image.id == uuid.UUID(image_id)).values(expires_at=utc_now() - timedelta(seconds=1))
        )
        await session.commit()
    assert (await client.get(f"/image/{image_id}")).status_code == 404  # the owner too


async def test_a_heic_image_previews_as_a_jpeg_that_chat_apps_can_show(settings: Settings) -> None:
    async with running_app(without_workers(settings)) as (app, client):
        created = (await upload(client, corpus_bytes("heic_static.heic"), "IMG_0042.HEIC")).json()
        await run_thumbnail_job(app, created["id"])
        tags = meta_tags((await client.get(f"/image/{created['id']}")).text)
        assert tags["og:image"] == f"http://testserver/api/v1/images/{created['id']}/file?format=jpeg"
        assert tags["og:image:type"] == "image/jpeg"
        picture = await client.get(tags["og:image"])
        assert picture.status_code == 200
        assert picture.headers["content-type"] == "image/jpeg"
