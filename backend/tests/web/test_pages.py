"""Every page: status, redirects, 404s, security headers, static files and escaping of user text."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from markupsafe import escape

from app.api.web_support import TEMPLATES_DIR
from app.config import Settings
from tests.api.apps import run_thumbnail_job, running_app, without_workers
from tests.conftest import corpus_bytes
from tests.factories import bearer, make_jpeg, register, upload
from tests.web.helpers import image_ids, logged_in_user

PAGES = ["/", "/upload", "/login", "/register"]
HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.mark.parametrize(
    ("path", "heading"),
    [
        ("/", "Share images in seconds"),
        ("/upload", "Upload an image"),
        ("/login", "Log in"),
        ("/register", "Create an account"),
    ],
)
async def test_pages_render_for_a_visitor(client: httpx.AsyncClient, path: str, heading: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert f"<h1>{heading}</h1>" in response.text
    assert 'href="/login"' in response.text  # the navigation offers to log in


async def test_logged_in_pages_show_the_user_and_their_gallery(client: httpx.AsyncClient) -> None:
    email, _ = await logged_in_user(client)
    home = await client.get("/")
    assert home.status_code == 200
    assert "Your gallery" in home.text
    assert email in home.text
    assert "Log out" in home.text
    assert 'href="/login"' not in home.text
    mine = await client.get("/my-images")
    assert mine.status_code == 200
    assert "<h1>My images</h1>" in mine.text


async def test_my_images_sends_a_visitor_to_log_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/my-images")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/my-images"


async def test_gallery_partial_needs_a_session(client: httpx.AsyncClient) -> None:
    plain = await client.get("/partials/gallery")
    assert plain.status_code == 303
    assert plain.headers["location"].startswith("/login")
    from_htmx = await client.get("/partials/gallery", headers={"HX-Request": "true"})
    assert from_htmx.headers["hx-redirect"].startswith("/login")


@pytest.mark.parametrize("path", ["/login", "/register"])
async def test_login_and_register_pages_send_a_logged_in_user_on(client: httpx.AsyncClient, path: str) -> None:
    await logged_in_user(client)
    response = await client.get(path, params={"next": "/upload"})
    assert response.status_code == 303
    assert response.headers["location"] == "/upload"


async def test_image_page_shows_the_facts_of_the_image(client: httpx.AsyncClient) -> None:
    created = (await upload(client, make_jpeg(120, 80), "holiday.jpg")).json()
    response = await client.get(f"/image/{created['id']}")
    assert response.status_code == 200
    page = response.text
    assert '<h1 class="image-title">holiday.jpg</h1>' in page
    # A small picture at full size: the original itself (a browser reads JPEG; no conversion to wait for).
    assert f'src="/api/v1/images/{created["id"]}/file"' in page
    assert 'alt="holiday.jpg"' in page
    assert "120 \N{MULTIPLICATION SIGN} 80 px" in page
    assert "image/jpeg" in page
    assert f"{created['file_size']:,} bytes" in page
    assert created["created_at"][:10] in page
    assert f'value="http://testserver/api/v1/images/{created["id"]}/file"' in page  # the link to copy
    assert "Copy link" in page
    assert "Download" in page
    assert 'name="delete_token"' in page  # anonymous: deleting needs the token


async def test_image_page_offers_delete_to_the_owner_only(client: httpx.AsyncClient) -> None:
    _, token = await logged_in_user(client)
    created = (await upload(client, make_jpeg(), headers=bearer(token))).json()
    as_owner = await client.get(f"/image/{created['id']}")
    assert 'class="button danger"' in as_owner.text
    assert 'name="delete_token"' not in as_owner.text
    client.cookies.clear()
    as_visitor = await client.get(f"/image/{created['id']}")
    assert as_visitor.status_code == 200
    assert 'class="button danger"' not in as_visitor.text


@pytest.mark.parametrize("image_id", [str(uuid.uuid4()), "not-a-uuid", "1' OR '1'='1"])
async def test_unknown_or_malformed_image_id_gets_the_404_page(client: httpx.AsyncClient, image_id: str) -> None:
    response = await client.get(f"/image/{image_id}", headers=HTML)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in response.text
    assert "There is no image here" in response.text


async def test_unknown_page_gets_the_404_page_and_the_api_keeps_json(client: httpx.AsyncClient) -> None:
    page = await client.get("/no/such/page", headers=HTML)
    assert page.status_code == 404
    assert "<h1>Not found</h1>" in page.text
    api = await client.get("/api/v1/nothing", headers=HTML)
    assert api.status_code == 404
    assert api.json()["detail"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("path", [*PAGES, "/image/unknown"])
async def test_pages_send_the_security_headers(client: httpx.AsyncClient, path: str) -> None:
    headers = (await client.get(path, headers=HTML)).headers
    directives = (part.strip().partition(" ") for part in headers["content-security-policy"].split(";"))
    policy = {name: value for name, _, value in directives}
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert policy["script-src"] == "'self'"
    assert headers["x-frame-options"] == "DENY" or policy.get("frame-ancestors") == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert headers["referrer-policy"] in {"same-origin", "strict-origin-when-cross-origin", "no-referrer"}
    assert headers["x-content-type-options"] == "nosniff"


async def test_every_static_url_of_the_base_page_resolves_with_immutable_caching(client: httpx.AsyncClient) -> None:
    page = (await client.get("/")).text
    urls = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert len(urls) >= 3  # the stylesheet, htmx and our script
    assert any("/static/vendor/htmx-" in url for url in urls)
    for url in urls:
        assert "?v=" in url, url
        response = await client.get(url.replace("&amp;", "&"))
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
    unversioned = await client.get("/static/css/app.css")
    assert unversioned.status_code == 200
    assert "immutable" not in unversioned.headers.get("cache-control", "")


async def test_htmx_is_vendored_and_no_template_loads_anything_from_elsewhere(client: httpx.AsyncClient) -> None:
    htmx = await client.get("/static/vendor/htmx-2.0.11.min.js")
    assert htmx.status_code == 200
    assert "htmx" in htmx.text
    for template in TEMPLATES_DIR.glob("*.html"):
        text = template.read_text()
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), template.name
        # The CSP allows neither inline scripts nor inline styles.
        assert "<script>" not in text, template.name
        assert "style=" not in text, template.name


MALICIOUS_NAMES = ["<script>alert(1)</script>.jpg", "<img src=x onerror=alert(1)>\"'.jpg"]


@pytest.mark.parametrize("raw_name", MALICIOUS_NAMES)
async def test_filenames_are_escaped_on_the_image_page_and_in_the_gallery(
    client: httpx.AsyncClient, raw_name: str
) -> None:
    _, token = await logged_in_user(client)
    created = await upload(client, make_jpeg(), raw_name, headers=bearer(token))
    assert created.status_code == 201, created.text
    stored_name = created.json()["filename"]
    assert "<" in stored_name or ">" in stored_name  # the name still carries markup to escape
    image_page = (await client.get(f"/image/{created.json()['id']}")).text
    gallery = (await client.get("/")).text
    fragment = (await client.get("/partials/gallery")).text
    for html in (image_page, gallery, fragment):
        assert stored_name not in html
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert str(escape(stored_name)) in html


async def test_home_lists_only_the_users_own_images(client: httpx.AsyncClient) -> None:
    other = await register(client, "other@example.com")
    theirs = (await upload(client, make_jpeg(), headers=bearer(other["access_token"]))).json()
    anonymous = (await upload(client, make_jpeg())).json()
    _, token = await logged_in_user(client)
    mine = (await upload(client, make_jpeg(), headers=bearer(token))).json()
    for path in ("/", "/my-images", "/partials/gallery"):
        assert image_ids((await client.get(path)).text) == [mine["id"]]
    client.cookies.clear()
    visitor_home = (await client.get("/")).text
    assert image_ids(visitor_home) == []
    assert theirs["id"] not in visitor_home
    assert anonymous["id"] not in visitor_home


async def test_a_heic_page_waits_for_its_preview_and_then_shows_it(settings: Settings) -> None:
    """Most browsers cannot show HEIC: until its thumbnail exists, the page asks again for it."""
    async with running_app(without_workers(settings)) as (app, client):
        created = (await upload(client, corpus_bytes("heic_static.heic"), "IMG_0042.HEIC")).json()
        pending = (await client.get(f"/image/{created['id']}")).text
        assert "Preparing a preview" in pending
        assert f'hx-get="/image/{created["id"]}"' in pending
        assert f'src="{created["url"]}"' not in pending  # no broken image of the original

        await run_thumbnail_job(app, created["id"])
        ready = (await client.get(f"/image/{created['id']}")).text
        assert "Preparing a preview" not in ready
        assert "hx-get" not in ready  # asks no more
        # Shown converted (AVIF, WebP or JPEG as the browser takes them), at full size where it fits.
        assert f'src="{created["url"]}?format=auto"' in ready
        assert f'{created["url"]}?format=auto 480w"' in ready
        assert f'href="{created["url"]}" download' in ready
