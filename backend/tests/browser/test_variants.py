"""Variants in Chromium: a phone and a desktop each fetch the width they need, as AVIF or WebP, HEIC included.

The placeholder sketch shows until the picture arrives, and then goes; the picture's box does not move.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image, ImageDraw, ImageOps
from playwright.async_api import Browser, Locator, Page, Response, Route, expect

from app.media.formats import BROWSER_NATIVE
from tests.browser.conftest import (
    DESKTOP,
    PHONE,
    Account,
    LiveServer,
    PageProblems,
    create_account,
    log_in,
    new_context,
    screenshot,
)
from tests.conftest import corpus_bytes
from tests.factories import bearer

VIEWPORTS = {"phone": PHONE, "desktop": DESKTOP}
NEGOTIATED_TYPES = {"image/avif", "image/webp"}  # Chromium takes both; stills come as AVIF
VARIANT_REQUEST = re.compile(r"/api/v1/images/[^/]+/file\?")


def scene(width: int, height: int, sky: tuple[str, str], hill: str, sun: str) -> bytes:
    """A photo-like JPEG (a sky, a sun, hills): something to recognise in a screenshot and in its sketch."""
    gradient = Image.linear_gradient("L").resize((width, height))
    picture = ImageOps.colorize(gradient, sky[0], sky[1]).convert("RGB")
    draw = ImageDraw.Draw(picture)
    radius = min(width, height) // 8
    draw.ellipse((width * 0.7 - radius, height * 0.25 - radius, width * 0.7 + radius, height * 0.25 + radius), sun)
    draw.polygon([(0, height), (0, height * 0.6), (width * 0.35, height * 0.45), (width * 0.8, height * 0.7),
                  (width, height * 0.55), (width, height)], hill)  # fmt: skip
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


# Uploaded in this order, so the gallery shows them the other way round. The HEIC is 480 x 360.
UPLOADS: dict[str, Callable[[], bytes]] = {
    "IMG_0042.HEIC": lambda: corpus_bytes("heic_static.heic"),
    "portrait.jpg": lambda: scene(1600, 2400, ("#f3b27a", "#3a4f9c"), "#2f5d3a", "#fff2a8"),
    "square.jpg": lambda: scene(1200, 1200, ("#9fd3f0", "#1d3557"), "#6b8f3c", "#ffd166"),
    "landscape.jpg": lambda: scene(2400, 1600, ("#ffcf99", "#7b2d5b"), "#3b2f2f", "#ffe66d"),
}


@dataclass
class Uploaded:
    account: Account
    images: dict[str, dict[str, Any]]  # by file name: the metadata, thumbnail ready


@pytest.fixture(scope="module")
async def uploaded(live_server: LiveServer) -> Uploaded:
    """An account with the four pictures, each thumbnail (and so its placeholder) made."""
    account = await create_account(live_server, "variants")
    images: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=30) as api:
        for name, make in UPLOADS.items():
            response = await api.post(
                "/api/v1/images/upload",
                files={"file": (name, make(), "application/octet-stream")},
                headers=bearer(account.access_token),
            )
            assert response.status_code == 201, response.text
            images[name] = response.json()
        for name, image in images.items():
            for _ in range(400):
                metadata = (await api.get(f"/api/v1/images/{image['id']}")).json()
                if metadata["thumbnail_status"] != "pending":
                    break
                await asyncio.sleep(0.05)
            assert metadata["thumbnail_status"] == "ready", name
            assert metadata["placeholder"], name
            images[name] = metadata
    return Uploaded(account, images)


@dataclass
class Tab:
    page: Page
    content_types: dict[str, str]  # by URL: what each response of this tab said it was


@asynccontextmanager
async def open_tab(browser: Browser, live_server: LiveServer, viewport: dict[str, int]) -> AsyncIterator[Tab]:
    """A fresh profile (nothing cached) whose tab fails the test on a script error or CSP violation."""
    context = await new_context(browser, live_server, **viewport)
    try:
        page = await context.new_page()
        problems = PageProblems()
        page.on("console", problems.console)
        page.on("pageerror", problems.page_error)
        content_types: dict[str, str] = {}

        def remember(response: Response) -> None:
            content_types[response.url] = response.headers.get("content-type", "")

        page.on("response", remember)
        yield Tab(page, content_types)
        assert problems.messages == [], problems.messages
    finally:
        await context.close()


@pytest.fixture(params=list(VIEWPORTS))
async def tab(request: pytest.FixtureRequest, browser: Browser, live_server: LiveServer) -> AsyncIterator[Tab]:
    """A tab at a phone's or a desktop's size."""
    async with open_tab(browser, live_server, VIEWPORTS[request.param]) as opened:
        yield opened


async def loaded(image: Locator) -> dict[str, Any]:
    """Wait until the picture has arrived; what Chromium chose and how it lays it out."""
    await image.scroll_into_view_if_needed()
    await image.evaluate("img => img.decode()")
    return dict(
        await image.evaluate(
            """img => ({currentSrc: img.currentSrc, complete: img.complete, naturalWidth: img.naturalWidth,
                        boxWidth: img.clientWidth, boxHeight: img.clientHeight})"""
        )
    )


def chosen_width(current_src: str, image: dict[str, Any]) -> int:
    """The width a variant URL asks for; the full size has none."""
    query = parse_qs(urlsplit(current_src).query)
    if not query:  # the original itself: the full size of a format the browser reads
        assert image["content_type"] in BROWSER_NATIVE, current_src
        return int(image["width"])
    assert query["format"] == ["auto"], current_src
    return int(query["w"][0]) if "w" in query else int(image["width"])


def expect_variant(tab: Tab, shown: dict[str, Any], image: dict[str, Any]) -> int:
    """The picture came as a variant of this image (AVIF or WebP), or at full size as the original where
    the browser reads it, and decoded; its width is returned."""
    assert urlsplit(shown["currentSrc"]).path == image["url"], shown
    served = tab.content_types.get(shown["currentSrc"])
    if urlsplit(shown["currentSrc"]).query:
        assert served in NEGOTIATED_TYPES, (shown, tab.content_types)
    else:
        assert served == image["content_type"], (shown, tab.content_types)
    assert shown["complete"]
    assert shown["naturalWidth"] > 0
    return chosen_width(shown["currentSrc"], image)


async def hold_pictures(page: Page) -> asyncio.Event:
    """Variant requests wait until the event is set: long enough to see what shows before a picture comes."""
    arrived = asyncio.Event()

    async def held(route: Route) -> None:
        await arrived.wait()
        await route.continue_()

    await page.route(VARIANT_REQUEST, held)
    return arrived


def viewport_name(tab: Tab) -> str:
    size = tab.page.viewport_size
    assert size is not None
    return "phone" if size["width"] == PHONE["width"] else "desktop"


# What a 1x screen needs, by the layout of app.css: tiles are ~165 px wide on the phone, ~204 px on the
# desktop (a 3:2 picture covering one is half again as wide); the image page fits 325 px on the phone,
# and on the desktop 1050 x 630 px (70% of the height).
TILE_WIDTHS = {
    "phone": {"landscape.jpg": 300, "square.jpg": 300, "portrait.jpg": 300, "IMG_0042.HEIC": 300},
    "desktop": {"landscape.jpg": 600, "square.jpg": 300, "portrait.jpg": 300, "IMG_0042.HEIC": 300},
}
PAGE_WIDTHS = {
    "phone": {"landscape.jpg": 600, "square.jpg": 600, "portrait.jpg": 600, "IMG_0042.HEIC": 480},
    "desktop": {"landscape.jpg": 1200, "square.jpg": 1200, "portrait.jpg": 600, "IMG_0042.HEIC": 480},
}


async def test_the_gallery_fetches_tile_sized_variants(tab: Tab, uploaded: Uploaded) -> None:
    viewport = viewport_name(tab)
    await log_in(tab.page, uploaded.account.email, next_path="/my-images")
    for name, image in uploaded.images.items():
        tile = tab.page.locator(f'#gallery a[href="/image/{image["id"]}"] .picture-image')
        shown = await loaded(tile)
        width = expect_variant(tab, shown, image)
        assert width == TILE_WIDTHS[viewport][name], (name, shown)
        # Never blurry on a 1x screen: at least as wide as the picture is drawn (covering the tile).
        drawn = max(shown["boxWidth"], shown["boxHeight"] * image["width"] / image["height"])
        assert width >= drawn, (name, shown)
        assert shown["boxWidth"] == shown["boxHeight"]  # a square tile, however shaped the picture
        await expect(tab.page.locator(f'#gallery a[href="/image/{image["id"]}"] .picture-placeholder')).to_be_hidden()
    assert await tab.page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    await screenshot(tab.page, f"variants-gallery-{viewport}")


@pytest.mark.parametrize("name", list(UPLOADS))
async def test_the_image_page_fetches_a_variant_for_the_screen(tab: Tab, uploaded: Uploaded, name: str) -> None:
    viewport = viewport_name(tab)
    image = uploaded.images[name]
    await tab.page.goto(f"/image/{image['id']}")
    main = tab.page.locator("#main-image")
    shown = await loaded(main)
    width = expect_variant(tab, shown, image)
    assert width == PAGE_WIDTHS[viewport][name], shown
    if viewport == "phone":
        assert width <= 600  # never a large original
    # The box has the picture's proportions (never stretched), within the frame and 70% of the height.
    ratio = shown["boxWidth"] / shown["boxHeight"]
    assert ratio == pytest.approx(image["width"] / image["height"], rel=0.01), shown
    assert shown["boxWidth"] <= min(image["width"], VIEWPORTS[viewport]["width"] - 50, 1050)
    assert shown["boxHeight"] <= 0.7 * VIEWPORTS[viewport]["height"] + 1
    await expect(tab.page.locator(".picture-placeholder")).to_be_hidden()
    # The direct link and Download stay the original's.
    assert await tab.page.get_by_role("link", name="Download").get_attribute("href") == image["url"]
    assert (await tab.page.locator("#direct-link").input_value()).endswith(image["url"])
    if name.endswith(".HEIC"):  # at full size, and as AVIF or WebP (expect_variant saw it come)
        await expect(tab.page.get_by_text("Shown converted")).to_be_visible()
    assert await tab.page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    await screenshot(tab.page, f"variants-image-{name.split('.')[0].lower()}-{viewport}")


async def test_the_placeholder_shows_until_the_picture_arrives_and_nothing_moves(tab: Tab, uploaded: Uploaded) -> None:
    viewport = viewport_name(tab)
    arrived = await hold_pictures(tab.page)
    image = uploaded.images["landscape.jpg"]
    await tab.page.goto(f"/image/{image['id']}", wait_until="domcontentloaded")  # "load" waits for the picture
    main = tab.page.locator("#main-image")
    sketch = tab.page.locator(".image-frame .picture-placeholder")
    await expect(sketch).to_be_visible()
    assert await sketch.evaluate("img => img.complete && img.naturalWidth > 0")  # the data URL is drawn
    assert not await main.evaluate("img => img.complete")
    before = await main.bounding_box()
    sketch_box = await sketch.bounding_box()
    assert before is not None
    assert before["height"] > 100  # its place is kept while nothing has arrived
    assert sketch_box == before  # the sketch covers exactly the picture's box
    await screenshot(tab.page, f"variants-image-loading-{viewport}")

    arrived.set()
    await loaded(main)
    await expect(sketch).to_be_hidden()
    assert await main.bounding_box() == before
    await screenshot(tab.page, f"variants-image-arrived-{viewport}")


async def test_gallery_placeholders_show_until_their_tiles_arrive(tab: Tab, uploaded: Uploaded) -> None:
    viewport = viewport_name(tab)
    await log_in(tab.page, uploaded.account.email, next_path="/my-images")
    arrived = await hold_pictures(tab.page)  # routing turns the HTTP cache off: all are asked again
    await tab.page.reload(wait_until="domcontentloaded")
    sketches = tab.page.locator("#gallery .picture-placeholder")
    await expect(sketches).to_have_count(len(UPLOADS))
    for index in range(len(UPLOADS)):
        await expect(sketches.nth(index)).to_be_visible()
    await screenshot(tab.page, f"variants-gallery-loading-{viewport}")
    arrived.set()
    for tile in await tab.page.locator("#gallery .picture-image").all():
        await loaded(tile)
    for index in range(len(UPLOADS)):
        await expect(sketches.nth(index)).to_be_hidden()


async def test_tiles_that_load_more_brings_show_their_placeholders_until_they_arrive(
    browser: Browser, live_server: LiveServer
) -> None:
    """HTMX swaps the next page in: its pictures' sketches go when they arrive, like the first page's."""
    account = await create_account(live_server, "variants-more")
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=30) as api:
        ids = []
        for number in range(21):  # one more than a page
            body = scene(400, 300, ("#ffd6a5", "#5a189a"), f"#{number * 11:02x}6040", "#fdffb6")
            created = await api.post(
                "/api/v1/images/upload",
                files={"file": (f"scene-{number:02d}.jpg", body, "image/jpeg")},
                headers=bearer(account.access_token),
            )
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        for _ in range(400):
            states = [(await api.get(f"/api/v1/images/{image_id}")).json()["thumbnail_status"] for image_id in ids]
            if "pending" not in states:
                break
            await asyncio.sleep(0.05)
        assert set(states) == {"ready"}, states
    oldest = ids[0]  # the one tile on the second page
    async with open_tab(browser, live_server, DESKTOP) as tab:
        await log_in(tab.page, account.email, next_path="/my-images")
        arrived = await hold_pictures(tab.page)
        await tab.page.get_by_role("button", name="Load more").click()
        sketch = tab.page.locator(f'#gallery a[href="/image/{oldest}"] .picture-placeholder')
        await sketch.scroll_into_view_if_needed()
        await expect(sketch).to_be_visible()
        arrived.set()
        await loaded(tab.page.locator(f'#gallery a[href="/image/{oldest}"] .picture-image'))
        await expect(sketch).to_be_hidden()


async def test_a_variant_that_cannot_be_had_gives_way_to_the_original(tab: Tab, uploaded: Uploaded) -> None:
    """A busy server (503) or a refused animation (422): where the browser reads the original, it shows that."""

    async def busy(route: Route) -> None:
        await route.fulfill(status=503, headers={"Retry-After": "2"}, body="busy")

    await tab.page.route(VARIANT_REQUEST, busy)
    image = uploaded.images["landscape.jpg"]
    await tab.page.goto(f"/image/{image['id']}")
    main = tab.page.locator("#main-image")
    await tab.page.wait_for_function("() => document.getElementById('main-image').currentSrc.indexOf('?') < 0")
    shown = await loaded(main)
    assert urlsplit(shown["currentSrc"]).path == image["url"]
    assert urlsplit(shown["currentSrc"]).query == ""
    assert shown["naturalWidth"] > 0
    await expect(tab.page.locator(".picture-placeholder")).to_be_hidden()

    # HEIC has no original a browser reads: its alt text shows, and not a sketch of something absent.
    heic = uploaded.images["IMG_0042.HEIC"]
    await tab.page.goto(f"/image/{heic['id']}")
    await tab.page.wait_for_function("() => document.getElementById('main-image').complete")
    assert await tab.page.locator("#main-image").evaluate("img => img.naturalWidth") == 0
    await expect(tab.page.locator(".picture-placeholder")).to_be_hidden()
