"""Every accepted format shows in Chromium: gallery tiles and image pages, HEIC converted on the way."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import Account, LiveServer, create_account, log_in, screenshot
from tests.conftest import corpus_bytes
from tests.factories import bearer

# One file per format; Chromium displays all but HEIC/HEIF itself.
UPLOADS = {
    "jpeg_camera_metadata_orientation_6.jpg": "image/jpeg",
    "png_text_exif_time_icc_orientation_6.png": "image/png",
    "webp_animated_5_frames_alpha.webp": "image/webp",
    "gif_animated_10_frames_transparent.gif": "image/gif",
    "avif_exif_gps_xmp_orientation_6.avif": "image/avif",
    "heic_exif_gps_xmp_orientation_6.heic": "image/heic",
    "heif_mif1_brand_only.heif": "image/heif",
}


@pytest.fixture(scope="module")
async def uploader(live_server: LiveServer) -> tuple[Account, dict[str, dict[str, Any]]]:
    """An account that uploaded one file of every format, thumbnails made."""
    account = await create_account(live_server, "formats")
    created: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10) as api:
        for name in UPLOADS:
            response = await api.post(
                "/api/v1/images/upload",
                files={"file": (name, corpus_bytes(name), "application/octet-stream")},
                headers=bearer(account.access_token),
            )
            assert response.status_code == 201, response.text
            created[name] = response.json()
        for name, image in created.items():
            for _ in range(200):
                metadata = (await api.get(f"/api/v1/images/{image['id']}")).json()
                if metadata["thumbnail_status"] != "pending":
                    break
                await asyncio.sleep(0.05)
            assert metadata["thumbnail_status"] == "ready", name
            created[name] = metadata
    return account, created


async def _shows_a_picture(image: Locator) -> None:
    """The <img> has loaded and decoded (a broken image has a natural width of 0)."""
    await expect(image).to_be_visible()
    await image.evaluate("img => img.decode()")
    assert await image.evaluate("img => img.complete && img.naturalWidth > 0")


async def test_the_gallery_shows_every_format(page: Page, uploader: tuple[Account, dict[str, dict[str, Any]]]) -> None:
    account, created = uploader
    await log_in(page, account.email, next_path="/my-images")
    for name, image in created.items():
        tile = page.locator(f'#gallery a[href="/image/{image["id"]}"] .picture-image')
        await _shows_a_picture(tile)
        assert await tile.get_attribute("alt") == name
    await screenshot(page, "gallery-every-format")


@pytest.mark.parametrize("name", list(UPLOADS))
async def test_the_image_page_shows_every_format_and_downloads_the_original(
    page: Page, uploader: tuple[Account, dict[str, dict[str, Any]]], name: str
) -> None:
    _account, created = uploader
    image = created[name]
    await page.goto(f"/image/{image['id']}")
    main = page.locator("#main-image")
    await _shows_a_picture(main)
    # At full size on this small image: the original where Chromium reads it, else converted (HEIC).
    native = UPLOADS[name] not in ("image/heic", "image/heif")
    shown = f"{page.url.split('/image/')[0]}{image['url']}" + ("" if native else "?format=auto")
    assert await main.evaluate("img => img.currentSrc") == shown
    if UPLOADS[name] in ("image/heic", "image/heif"):
        # Chromium cannot read HEIC: it is told the picture is converted, and the download is the original.
        await expect(page.get_by_text("Shown converted")).to_be_visible()
    download = page.get_by_role("link", name="Download")
    assert await download.get_attribute("href") == image["url"]
    await screenshot(page, f"image-page-{name.split('.')[-1]}")
