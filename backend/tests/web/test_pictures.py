"""Pictures on pages are variants: srcset and sizes, format=auto, width and height, the placeholder sketch."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from markupsafe import Markup
from sqlalchemy import update

from app.config import Settings
from app.models import Image as ImageRow
from tests.api.apps import run_thumbnail_job, running_app, without_workers
from tests.conftest import corpus_bytes
from tests.factories import bearer, make_jpeg, upload
from tests.web.helpers import logged_in_user

IMG_TAG = re.compile(r"<img\b[^>]*>")
ATTRIBUTE = re.compile(r'([a-z-]+)(?:="([^"]*)")?')


def _images(html: str, css_class: str) -> list[dict[str, str]]:
    """The attributes of each <img> of this class, unescaped as a browser reads them."""
    found = []
    for tag in IMG_TAG.findall(html):
        attributes = {name: Markup(value or "").unescape() for name, value in ATTRIBUTE.findall(tag[4:-1])}
        if css_class in attributes.get("class", "").split():
            found.append(attributes)
    return found


def _srcset(image: dict[str, Any]) -> str:
    file = image["url"]
    return f"{file}?w=150&format=auto 150w, {file}?w=300&format=auto 300w, {file}?w=600&format=auto 600w, " + (
        f"{file}?w=1200&format=auto 1200w, {file} 2400w"  # at full size the original itself
    )


async def test_the_image_page_shows_variants_over_the_placeholder_and_links_the_original(settings: Settings) -> None:
    async with running_app(without_workers(settings)) as (app, client):
        created = (await upload(client, make_jpeg(2400, 1600), "wide.jpg")).json()
        await run_thumbnail_job(app, created["id"])
        metadata = (await client.get(f"/api/v1/images/{created['id']}")).json()
        assert metadata["placeholder"]
        page = (await client.get(f"/image/{created['id']}")).text

    [main] = _images(page, "picture-image")
    assert main["id"] == "main-image"
    assert main["src"] == f"{created['url']}?w=600&format=auto"
    assert main["srcset"] == _srcset(created)
    assert main["sizes"].startswith("min(100vw - 50px, 1050px, 2400px, 70vh * 1.5)")
    assert (main["width"], main["height"], main["alt"]) == ("2400", "1600", "wide.jpg")
    # Where a variant cannot be had (busy, or an animation too long to convert), app.js shows this.
    assert main["data-original"] == created["url"]
    assert main["decoding"] == "async"
    assert main["fetchpriority"] == "high"  # the page's largest picture: not lazy
    [sketch] = _images(page, "picture-placeholder")
    assert sketch["src"].startswith("data:image/png;base64,")
    assert (sketch["alt"], sketch["aria-hidden"]) == ("", "true")
    assert "hidden" not in sketch  # app.js hides it once the picture has arrived
    # The direct link and Download are the original's.
    assert f'value="http://testserver{created["url"]}"' in page
    assert f'href="{created["url"]}" download' in page


async def test_a_picture_smaller_than_every_width_is_offered_at_its_own_size(client: httpx.AsyncClient) -> None:
    created = (await upload(client, make_jpeg(120, 80), "small.jpg")).json()
    page = (await client.get(f"/image/{created['id']}")).text
    [main] = _images(page, "picture-image")
    assert main["src"] == created["url"]
    assert main["srcset"] == f"{created['url']} 120w"
    assert (main["width"], main["height"]) == ("120", "80")


async def test_a_pending_thumbnail_shows_the_picture_without_a_placeholder(settings: Settings) -> None:
    async with running_app(without_workers(settings)) as (_app, client):
        created = (await upload(client, make_jpeg(800, 600), "pending.jpg")).json()
        page = (await client.get(f"/image/{created['id']}")).text
    [main] = _images(page, "picture-image")
    assert main["srcset"].endswith(f"{created['url']} 800w")
    assert _images(page, "picture-placeholder") == []
    assert "hx-get" not in page  # a JPEG needs no preview to be shown


async def test_gallery_tiles_are_variants_sized_for_a_tile(settings: Settings) -> None:
    async with running_app(without_workers(settings)) as (app, client):
        _, token = await logged_in_user(client)
        wide = (await upload(client, make_jpeg(2400, 1600), "wide.jpg", headers=bearer(token))).json()
        square = (await upload(client, make_jpeg(1000, 1000), "square.jpg", headers=bearer(token))).json()
        await run_thumbnail_job(app, wide["id"])
        gallery = (await client.get("/")).text
        fragment = (await client.get("/partials/gallery")).text

    for html in (gallery, fragment):
        tiles = _images(html, "picture-image")
        assert [tile["alt"] for tile in tiles] == ["square.jpg", "wide.jpg"]  # newest first
        square_tile, wide_tile = tiles
        assert wide_tile["src"] == f"{wide['url']}?w=300&format=auto"
        assert wide_tile["srcset"] == _srcset(wide)
        assert (wide_tile["loading"], wide_tile["decoding"]) == ("lazy", "async")
        assert (wide_tile["width"], wide_tile["height"]) == ("2400", "1600")
        # The picture covers a square tile: a 3:2 one must be half again as wide as the tile.
        assert wide_tile["sizes"].startswith("(min-width: 1100px) calc((205px) * 1.5), ")
        assert square_tile["src"] == f"{square['url']}?w=300&format=auto"
        assert square_tile["sizes"].startswith("(min-width: 1100px) 205px, ")
        assert square_tile["sizes"].endswith(", calc(100vw - 32px)")
        # Only the tile whose thumbnail job ran has its sketch yet.
        [sketch] = _images(html, "picture-placeholder")
        assert sketch["src"].startswith("data:image/png;base64,")


async def test_a_heic_image_is_shown_through_variants_once_read(settings: Settings) -> None:
    """HEIC becomes AVIF, WebP or JPEG on the way: every browser shows it, at full quality."""
    async with running_app(without_workers(settings)) as (app, client):
        created = (await upload(client, corpus_bytes("heic_static.heic"), "IMG_0042.HEIC")).json()
        await run_thumbnail_job(app, created["id"])
        page = (await client.get(f"/image/{created['id']}")).text

    [main] = _images(page, "picture-image")
    assert main["srcset"] == (
        f"{created['url']}?w=150&format=auto 150w, {created['url']}?w=300&format=auto 300w, "
        f"{created['url']}?format=auto 480w"
    )
    assert "/thumbnail" not in page
    assert "<picture>" not in page
    assert "data-original" not in main  # no browser but Safari would show the original
    assert "Download gives the original" in page
    assert f'href="{created["url"]}" download' in page


@pytest.mark.parametrize(
    ("name", "body", "shown"),
    [("photo.jpg", make_jpeg(800, 600), "the original"), ("photo.heic", corpus_bytes("heic_static.heic"), "words")],
)
async def test_a_failed_thumbnail_shows_the_original_or_says_so_and_stops_asking(
    settings: Settings, name: str, body: bytes, shown: str
) -> None:
    """Variants are read as the thumbnail was: where it failed, a JPEG shows as it is, a HEIC cannot."""
    async with running_app(without_workers(settings)) as (app, client):
        created = (await upload(client, body, name)).json()
        async with app.state.sessionmaker() as session, session.begin():
            failed = {"thumbnail_status": "failed", "thumbnail_error": "cannot make a thumbnail: test"}
            await session.execute(update(ImageRow).where(ImageRow.id == created["id"]).values(**failed))
        page = (await client.get(f"/image/{created['id']}")).text

    assert "hx-get" not in page  # nothing will change: no asking again
    assert "?format=auto" not in page
    if shown == "the original":
        [original] = _images(page, "image-original")
        assert (original["src"], original["width"], original["height"]) == (created["url"], "800", "600")
    else:
        assert "No preview can be made of this file" in page
