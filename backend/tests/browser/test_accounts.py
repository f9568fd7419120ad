"""Accounts for tools in Chromium: API keys and their ShareX file, password and account changes, private and
expiring uploads, share links, and the link-preview tags of the image page."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from PIL import Image
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import (
    DESKTOP,
    PASSWORD,
    PHONE,
    LiveServer,
    PageProblems,
    accept_next_dialog,
    create_account,
    log_in,
    new_context,
    screenshot,
)
from tests.factories import make_jpeg

IMAGE_PAGE = re.compile(r"/image/([0-9a-f-]{36})$")
NEW_PASSWORD = "a brand new passphrase"


@asynccontextmanager
async def browsing(browser: Browser, live_server: LiveServer, size: dict[str, int]) -> AsyncIterator[Page]:
    """A fresh browser profile at this viewport, whose script errors and CSP violations fail the test."""
    context = await new_context(browser, live_server, width=size["width"], height=size["height"])
    problems = PageProblems()
    try:
        page = await context.new_page()
        page.on("console", problems.console)
        page.on("pageerror", problems.page_error)
        yield page
    finally:
        await context.close()
    assert problems.messages == [], problems.messages


async def assert_fits_the_width(page: Page) -> None:
    widths = await page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth})"
    )
    assert widths["scroll"] <= widths["client"], f"{page.url} scrolls sideways: {widths}"


async def meta(page: Page, name: str) -> str | None:
    """The content of a <meta property|name=...> in the page's head, None when there is none."""
    tag = page.locator(f'head meta[property="{name}"], head meta[name="{name}"]')
    if await tag.count() == 0:
        return None
    return await tag.first.get_attribute("content")


async def create_key(page: Page, name: str, *, without: tuple[str, ...] = (), days: str = "") -> str:
    """Make a key on the API keys page; the key as the page shows it (once)."""
    await page.goto("/account/keys")
    await page.get_by_label("Name").fill(name)
    for scope in without:
        await page.get_by_role("checkbox", name=scope).uncheck()
    if days:
        await page.get_by_label("Expires after (days)").fill(days)
    await page.get_by_role("button", name="Create key").click()
    await expect(page.get_by_text("Copy this key now.")).to_be_visible()
    return await page.get_by_label("API key").input_value()


async def test_an_api_key_is_made_shown_once_downloaded_for_sharex_used_and_revoked(
    browser: Browser, live_server: LiveServer
) -> None:
    account = await create_account(live_server, "keys")
    async with browsing(browser, live_server, DESKTOP) as page:
        await log_in(page, account.email)
        await page.get_by_role("link", name="API keys").click()
        await expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
        await expect(page.get_by_text("No keys yet.")).to_be_visible()
        await screenshot(page, "desktop-api-keys-empty")

        key = await create_key(page, "ShareX on my laptop", without=("images:delete",), days="90")
        assert key.startswith("chk_")
        await page.get_by_role("button", name="Copy", exact=True).click()
        await expect(page.get_by_role("button", name="Copied!")).to_be_visible()
        assert await page.evaluate("navigator.clipboard.readText()") == key
        snippet = page.locator("#shell-snippet")
        await expect(snippet).to_contain_text(f"X-API-Key: {key}")
        await expect(snippet).to_contain_text(f"{live_server.base_url}/api/v1/images/upload")
        await expect(snippet).to_contain_text("flameshot gui --raw")
        assert key not in page.url
        await screenshot(page, "desktop-api-key-created")

        async with page.expect_download() as download_info:
            await page.get_by_role("button", name="Download ShareX config").click()
        download = await download_info.value
        assert download.suggested_filename == "Chitram (ShareX on my laptop).sxcu"
        assert key not in download.url
        saved = await download.path()
        config = json.loads(await asyncio.to_thread(saved.read_text))
        assert config["Headers"]["X-API-Key"] == key
        assert config["RequestURL"] == f"{live_server.base_url}/api/v1/images/upload"
        assert config["Body"] == "MultipartFormData"

        # Replay the upload ShareX would make, and read its link as ShareX does ({json:url}).
        async with httpx.AsyncClient(timeout=10) as tool:
            uploaded = await tool.post(
                config["RequestURL"],
                headers=config["Headers"],
                files={config["FileFormName"]: ("screenshot.jpg", make_jpeg(64, 48), "image/jpeg")},
            )
            assert uploaded.status_code == 201, uploaded.text
            link = config["URL"].replace("{json:url}", uploaded.json()["url"])
            fetched = await tool.get(link)
            assert fetched.status_code == 200
            assert fetched.headers["content-type"] == "image/jpeg"

            # Listed without its secret, with its last use.
            await page.goto("/account/keys")
            assert key not in await page.content()
            card = page.locator(".key-card", has_text="ShareX on my laptop")
            await expect(card).to_contain_text(key[: len("chk_") + 16])
            await expect(card).to_contain_text("images:read, images:upload")
            await expect(card.locator("dd").nth(2)).not_to_have_text("never")  # last used
            await expect(card.locator("dd").nth(3)).not_to_have_text("never")  # expires
            await screenshot(page, "desktop-api-keys-listed")

            dialogs = accept_next_dialog(page)
            await page.get_by_role("button", name="Revoke ShareX on my laptop").click()
            await page.wait_for_url("**/account/keys?revoked=1")
            assert dialogs == ["Revoke the key “ShareX on my laptop”? Tools using it stop working at once."]
            await expect(page.get_by_role("status")).to_contain_text("The key was revoked.")
            await expect(page.locator(".key-card")).to_have_count(0)

            refused = await tool.post(
                config["RequestURL"],
                headers=config["Headers"],
                files={"file": ("again.jpg", make_jpeg(64, 48), "image/jpeg")},
            )
            assert refused.status_code == 401


async def test_the_api_keys_page_fits_a_phone(browser: Browser, live_server: LiveServer) -> None:
    account = await create_account(live_server, "a-rather-long-email-address-for-keys")
    async with browsing(browser, live_server, PHONE) as page:
        await log_in(page, account.email)
        await create_key(page, "Phone script with a rather long name for a key", days="7")
        await screenshot(page, "phone-api-key-created")
        await assert_fits_the_width(page)
        await page.goto("/account/keys")
        await screenshot(page, "phone-api-keys-listed")
        await assert_fits_the_width(page)


async def _session_works(context: BrowserContext) -> bool:
    """Whether this profile's session still opens "My images" (else it is sent to log in)."""
    page = await context.new_page()
    try:
        await page.goto("/my-images")
        return not page.url.split("?")[0].endswith("/login")
    finally:
        await page.close()


async def test_changing_the_password_keeps_this_browser_and_logs_out_the_others(
    browser: Browser, live_server: LiveServer
) -> None:
    account = await create_account(live_server, "password")
    other = await new_context(browser, live_server)
    try:
        other_page = await other.new_page()
        await log_in(other_page, account.email)
        assert await _session_works(other)

        async with browsing(browser, live_server, PHONE) as page:
            await log_in(page, account.email)
            await page.locator(".nav-user a").click()
            await expect(page.get_by_role("heading", name="Account", exact=True)).to_be_visible()
            await expect(page.locator("#usage-images")).to_have_text("0 of unlimited")
            await assert_fits_the_width(page)
            await screenshot(page, "phone-account")

            await page.get_by_label("Current password").fill("not my password")
            await page.locator("#new-password").fill(NEW_PASSWORD)
            await page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
            await page.get_by_role("button", name="Change password").click()
            await expect(page.get_by_role("alert")).to_have_text("The password is not correct.")
            await screenshot(page, "phone-account-wrong-password")

            await page.get_by_label("Current password").fill(PASSWORD)
            await page.locator("#new-password").fill(NEW_PASSWORD)
            await page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
            await page.get_by_role("button", name="Change password").click()
            await page.wait_for_url("**/account?password=changed")
            await expect(page.get_by_role("status")).to_contain_text("Your password was changed.")
            assert await _session_works(page.context)

        assert not await _session_works(other)  # the other browser was logged out
        await log_in(other_page, account.email, NEW_PASSWORD)
        assert await _session_works(other)
    finally:
        await other.close()


async def test_deleting_the_account_logs_out_and_its_images_answer_404(
    browser: Browser, live_server: LiveServer
) -> None:
    account = await create_account(live_server, "delete", images=2)
    async with browsing(browser, live_server, DESKTOP) as page:
        await log_in(page, account.email)
        for image_id in account.image_ids:
            shown = await page.goto(f"/image/{image_id}")
            assert shown is not None
            assert shown.status == 200
        await page.goto("/account")
        await expect(page.locator("#usage-images")).to_have_text("2 of unlimited")
        await screenshot(page, "desktop-account")

        await page.get_by_label("Password", exact=True).fill(PASSWORD)
        await page.get_by_label("Type DELETE to confirm").fill("DELETE")
        await page.get_by_role("button", name="Delete my account").click()
        await page.wait_for_url("**/?account_deleted=1")
        await expect(page.get_by_role("status")).to_contain_text("Your account was deleted")
        await expect(page.get_by_role("link", name="Log in")).to_be_visible()
        await screenshot(page, "desktop-account-deleted")
        for image_id in account.image_ids:
            gone = await page.goto(f"/image/{image_id}")
            assert gone is not None
            assert gone.status == 404

        await page.goto("/login")
        await page.get_by_label("Email").fill(account.email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.get_by_role("alert")).to_have_text("Incorrect email or password.")


async def test_a_private_expiring_upload_is_the_owners_alone_and_shared_by_a_signed_link(
    browser: Browser, live_server: LiveServer
) -> None:
    account = await create_account(live_server, "private")
    async with browsing(browser, live_server, PHONE) as page:
        await log_in(page, account.email)
        await page.goto("/upload")
        await page.locator("#file-input").set_input_files(
            {"name": "secret plan.jpg", "mimeType": "image/jpeg", "buffer": make_jpeg(1600, 1000)}
        )
        await page.get_by_role("radio", name=re.compile("^Private")).check()
        await page.get_by_label("Delete it after").select_option(label="7 days")
        await assert_fits_the_width(page)
        await screenshot(page, "phone-upload-private-options")
        await page.get_by_role("button", name="Upload", exact=True).click()
        await page.wait_for_url(IMAGE_PAGE)
        match = IMAGE_PAGE.search(page.url)
        assert match is not None
        image_id = match.group(1)

        facts = page.locator(".facts")
        await expect(facts).to_contain_text("Private: only you")
        await expect(facts).to_contain_text("In 7 days")
        # Its owner sees it, but nothing in the page's head gives its picture away.
        assert await meta(page, "og:image") is None
        assert await meta(page, "twitter:image") is None
        assert await meta(page, "robots") == "noindex"
        assert await meta(page, "og:title") == "secret plan.jpg"

        await page.get_by_label("Valid for").select_option(label="1 hour")
        await page.get_by_role("button", name="Create share link").click()
        share_field = page.get_by_label("Share link", exact=True)
        await expect(share_field).to_be_visible()
        share_url = await share_field.input_value()
        assert share_url.startswith(f"{live_server.base_url}/api/v1/images/{image_id}/file?")
        await expect(page.locator("#share-expires")).to_contain_text("Works until")
        await assert_fits_the_width(page)
        await screenshot(page, "phone-image-private-shared")

        await page.goto("/my-images")
        tile = page.locator(".tile", has=page.locator(f'a[href="/image/{image_id}"]'))
        await expect(tile.locator(".badge-private")).to_have_text("Private")
        await expect(tile.locator(".badge-expiry")).to_have_text("Expires in 7 days")
        await screenshot(page, "phone-my-images-badges")

    async with browsing(browser, live_server, DESKTOP) as stranger:
        hidden = await stranger.goto(f"/image/{image_id}")
        assert hidden is not None
        assert hidden.status == 404
        await expect(stranger.get_by_role("heading", name="Not found")).to_be_visible()
        assert await meta(stranger, "og:image") is None
        async with httpx.AsyncClient(timeout=10) as anonymous:
            assert (await anonymous.get(f"{live_server.base_url}/api/v1/images/{image_id}/file")).status_code == 404
            shared = await anonymous.get(share_url)
            assert shared.status_code == 200
            assert shared.headers["content-type"] == "image/jpeg"


async def test_an_unlisted_image_page_offers_a_preview_picture_that_loads(
    browser: Browser, live_server: LiveServer
) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10) as api:
        created = await api.post(
            "/api/v1/images/upload", files={"file": ("sunset.jpg", make_jpeg(1600, 1000), "image/jpeg")}
        )
        assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    async with browsing(browser, live_server, DESKTOP) as page:
        await page.goto(f"/image/{image_id}")
        await expect(page.locator(".facts")).to_contain_text("Unlisted: anyone with the link")
        await expect(page.locator(".facts")).to_contain_text("Never")
        assert await meta(page, "og:type") == "website"
        assert await meta(page, "og:title") == "sunset.jpg"
        assert await meta(page, "og:url") == f"{live_server.base_url}/image/{image_id}"
        assert await meta(page, "twitter:card") == "summary_large_image"
        assert await meta(page, "robots") is None
        preview_url = await meta(page, "og:image")
        assert preview_url == f"{live_server.base_url}/api/v1/images/{image_id}/file?w=1200"
        assert await meta(page, "twitter:image") == preview_url
        width, height = await meta(page, "og:image:width"), await meta(page, "og:image:height")
        content_type = await meta(page, "og:image:type")
        await screenshot(page, "desktop-image-unlisted")

    async with httpx.AsyncClient(timeout=10) as chat_app:  # a crawler: no cookies, no Accept for AVIF
        fetched = await chat_app.get(preview_url)
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == content_type == "image/jpeg"
    with Image.open(io.BytesIO(fetched.content)) as picture:
        assert (str(picture.width), str(picture.height)) == (width, height) == ("1200", "750")
