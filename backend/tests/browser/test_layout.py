"""Layout and keyboard: every page fits a 375 px phone without sideways scrolling; the keyboard gets around."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import LiveServer, create_account, log_in, new_context, screenshot
from tests.factories import make_jpeg

PHONE_WIDTH = 375
# No spaces to wrap at: the worst case for a title, a tile caption and the Download link.
LONG_NAME = "a-very-long-file-name-that-a-camera-or-a-person-might-really-produce-" + "x" * 60 + ".jpg"


async def _assert_fits_the_width(page: Page, name: str) -> None:
    widths = await page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth})"
    )
    await screenshot(page, f"phone-{name}")
    assert widths["scroll"] <= widths["client"], f"{name} scrolls sideways: {widths}"


async def _anonymous_upload(live_server: LiveServer, filename: str) -> str:
    async with httpx.AsyncClient(base_url=live_server.base_url) as api:
        created = await api.post(
            "/api/v1/images/upload", files={"file": (filename, make_jpeg(1200, 400), "image/jpeg")}
        )
        assert created.status_code == 201, created.text
        return str(created.json()["id"])


async def test_no_page_scrolls_sideways_on_a_375_px_phone(browser: Browser, live_server: LiveServer) -> None:
    anonymous_id = await _anonymous_upload(live_server, LONG_NAME)
    account = await create_account(live_server, "a-rather-long-email-address-for-a-phone", images=25)
    context = await new_context(browser, live_server, width=PHONE_WIDTH, height=740)
    try:
        page = await context.new_page()
        for path, name in [
            ("/", "home-visitor"),
            ("/upload", "upload"),
            ("/login", "login"),
            ("/register", "register"),
            (f"/image/{anonymous_id}", "image-anonymous"),
            ("/image/unknown", "not-found"),
        ]:
            await page.goto(path)
            await _assert_fits_the_width(page, name)

        await page.goto("/upload")
        await page.locator("#file-input").set_input_files(
            {"name": LONG_NAME, "mimeType": "image/jpeg", "buffer": make_jpeg(600, 900)}
        )
        await page.get_by_role("button", name="Upload", exact=True).click()
        await expect(page.get_by_label("Delete token")).to_be_visible()
        await _assert_fits_the_width(page, "upload-result")

        await log_in(page, account.email)
        await expect(page.locator("#gallery a.tile-link")).to_have_count(20)
        await _assert_fits_the_width(page, "home-gallery")
        await page.goto("/my-images")
        await page.get_by_role("button", name="Load more").click()
        await expect(page.locator("#gallery a.tile-link")).to_have_count(25)
        await _assert_fits_the_width(page, "my-images")
        await page.goto(f"/image/{account.image_ids[0]}")
        await _assert_fits_the_width(page, "image-owner")
    finally:
        await context.close()


async def test_the_keyboard_reaches_the_content_and_the_file_picker(page: Page) -> None:
    await page.goto("/upload")
    await page.keyboard.press("Tab")
    skip_link = page.get_by_role("link", name="Skip to content")
    await expect(skip_link).to_be_focused()
    await expect(skip_link).to_be_in_viewport()  # it shows itself when focused
    await page.keyboard.press("Enter")
    await expect(page.locator("#main")).to_be_focused()
    for _ in range(5):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "file-input":
            break
    await expect(page.locator("#file-input")).to_be_focused()
    outline = await page.locator("#dropzone").evaluate("zone => getComputedStyle(zone).outlineStyle")
    assert outline != "none", "the focused file picker shows no focus ring"


async def test_images_and_form_fields_are_labelled(page: Page, live_server: LiveServer) -> None:
    image_id = await _anonymous_upload(live_server, "labelled.jpg")
    for path in ("/upload", "/login", "/register", f"/image/{image_id}"):
        await page.goto(path)
        # Decorative images (a picture's sizer and sketch) say so: an empty alt, hidden from readers.
        unlabelled = await page.evaluate(
            """() => [...document.querySelectorAll("input:not([type=hidden]), button, img")]
                 .filter(element => element.id !== "preview" || !element.hidden)
                 .filter(element => element.tagName === "IMG"
                   ? !element.alt && !(element.getAttribute("alt") === "" && element.ariaHidden === "true")
                   : element.tagName === "BUTTON"
                     ? !element.textContent.trim()
                     : !(element.labels && element.labels.length) && !element.getAttribute("aria-label"))
                 .map(element => element.outerHTML)"""
        )
        assert unlabelled == [], f"{path}: {unlabelled}"
