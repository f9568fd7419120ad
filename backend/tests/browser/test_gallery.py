"""The gallery in Chromium: "Load more" through every image, failed requests, an expired session."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import BrowserContext, Page, Route, expect

from tests.browser.conftest import JWT_SECRET, Account, LiveServer, create_account, log_in, screenshot
from tests.web.helpers import expired_session_token

GALLERY_PAGE_SIZE = 20
TILE_LINKS = "#gallery a.tile-link"


@pytest.fixture(scope="module")
async def gallery_owner(live_server: LiveServer) -> Account:
    """An account with 45 images (three pages), seeded through the API with its Bearer token."""
    return await create_account(live_server, "gallery", images=45)


async def _tile_ids(page: Page) -> list[str]:
    hrefs = await page.locator(TILE_LINKS).evaluate_all("links => links.map(link => link.getAttribute('href'))")
    return [str(href).removeprefix("/image/") for href in hrefs]


async def _expire_session(context: BrowserContext, live_server: LiveServer, account: Account) -> None:
    token = expired_session_token(account.user_id, JWT_SECRET)
    await context.add_cookies(
        [{"name": "chitram_session", "value": token, "url": live_server.base_url, "httpOnly": True, "sameSite": "Lax"}]
    )


async def test_load_more_pages_through_45_images_without_duplicates(page: Page, gallery_owner: Account) -> None:
    await log_in(page, gallery_owner.email)
    await expect(page.get_by_role("heading", name="Your gallery")).to_be_visible()
    tiles = page.locator(TILE_LINKS)
    await expect(tiles).to_have_count(GALLERY_PAGE_SIZE)
    load_more = page.get_by_role("button", name="Load more")
    clicks = 0
    while await load_more.count():
        before = await tiles.count()
        await load_more.click()
        await expect(tiles).not_to_have_count(before)
        clicks += 1
    assert clicks == 2
    await expect(tiles).to_have_count(45)
    await expect(load_more).to_have_count(0)
    shown = await _tile_ids(page)
    assert len(set(shown)) == len(shown) == 45
    assert shown == gallery_owner.image_ids  # newest first, every one once
    await screenshot(page, "home-gallery-all-loaded")


async def test_my_images_pages_forward_the_same_way(page: Page, gallery_owner: Account) -> None:
    await log_in(page, gallery_owner.email, next_path="/my-images")
    await expect(page.get_by_role("heading", name="My images")).to_be_visible()
    await page.get_by_role("button", name="Load more").click()
    await expect(page.locator(TILE_LINKS)).to_have_count(40)
    assert await _tile_ids(page) == gallery_owner.image_ids[:40]


async def test_a_failed_htmx_request_shows_the_error_toast(page: Page, gallery_owner: Account) -> None:
    await log_in(page, gallery_owner.email)
    toast = page.locator("#toast")
    await expect(toast).to_be_hidden()
    load_more = page.get_by_role("button", name="Load more")

    async def server_error(route: Route) -> None:
        await route.fulfill(status=500, content_type="application/json", body='{"detail": {"code": "INTERNAL_ERROR"}}')

    await page.route("**/partials/gallery*", server_error)
    await load_more.click()
    await expect(toast).to_be_visible()
    await expect(toast).to_have_text("Something went wrong (500). Please try again.")
    await expect(toast).to_have_attribute("role", "alert")
    await expect(page.locator(TILE_LINKS)).to_have_count(GALLERY_PAGE_SIZE)  # nothing was swapped in
    await screenshot(page, "gallery-error-toast")

    await page.unroute("**/partials/gallery*")
    await page.route("**/partials/gallery*", lambda route: route.abort("connectionrefused"))
    await load_more.click()
    await expect(toast).to_have_text("Could not reach the server. Check your connection and try again.")

    await page.unroute("**/partials/gallery*")
    await load_more.click()  # the button is still there, and works again
    await expect(page.locator(TILE_LINKS)).to_have_count(2 * GALLERY_PAGE_SIZE)


async def test_an_expired_session_leads_to_the_login_page(
    page: Page, context: BrowserContext, live_server: LiveServer, gallery_owner: Account
) -> None:
    await _expire_session(context, live_server, gallery_owner)
    await page.goto("/my-images")
    await expect(page).to_have_url(re.compile(r"/login\?next=/my-images$"))
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()


async def test_an_expired_session_during_an_htmx_request_leads_to_the_login_page(
    page: Page, context: BrowserContext, live_server: LiveServer, gallery_owner: Account
) -> None:
    await log_in(page, gallery_owner.email)
    await expect(page.locator(TILE_LINKS)).to_have_count(GALLERY_PAGE_SIZE)
    await _expire_session(context, live_server, gallery_owner)
    await page.get_by_role("button", name="Load more").click()
    await page.wait_for_url(re.compile(r"/login\?next=/$"))
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    await log_in(page, gallery_owner.email)  # and logging in again brings the gallery back
    await expect(page.locator(TILE_LINKS)).to_have_count(GALLERY_PAGE_SIZE)
