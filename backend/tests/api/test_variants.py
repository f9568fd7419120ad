"""Variants over HTTP: `?w=&format=` on a file link gives that picture, made once per content, served like
the original, and gone with the content's last image (ADR 0015)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from fast_thumbhash import thumb_hash_to_average_rgba, thumb_hash_to_rgba
from fastapi import FastAPI
from minio import Minio
from PIL import ExifTags, Image, ImageOps
from sqlalchemy import func, select

from app.config import Settings
from app.media.variants import REQUESTABLE_FORMATS
from app.models import Variant
from app.services.storage import StorageBackend
from app.services.variants import VariantService
from tests.api.apps import running_app, without_workers
from tests.api.helpers import bucket_keys
from tests.api.near_copies import comparable, count_routed, warm_near_copy
from tests.api.waiting import wait_for_thumbnail, wait_until
from tests.conftest import corpus_bytes, migrate
from tests.error_checks import without_request_id
from tests.factories import make_jpeg, token_of, upload_ok
from tests.image_checks import open_image, revealing_metadata
from tests.unit.thumbnail_checks import mean_difference, noisy_photo

WIDTHS = (150, 300, 600, 1200)
PILLOW_NAMES = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF", "gif": "GIF"}
CONTENT_TYPES = {pillow_name: f"image/{name}" for name, pillow_name in PILLOW_NAMES.items()}
CHROMIUM_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
# Safari before 16 took WebP but not AVIF.
SAFARI_ACCEPT = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"
INVALID_DETAILS = {"parameters": ["w", "format"], "widths": list(WIDTHS), "formats": list(REQUESTABLE_FORMATS)}
# Mean difference (0-255) under which two renders show the same picture; turned the wrong way, 40+.
SAME_PICTURE = 15.0


def png_of(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_of(picture: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def half_transparent_png() -> bytes:
    """200x100: the left half fully transparent, the right half opaque red."""
    picture = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    picture.paste((200, 30, 30, 255), (100, 0, 200, 100))
    return png_of(picture)


def alpha_at(picture: Image.Image, position: tuple[int, int]) -> int:
    pixel = picture.convert("RGBA").getpixel(position)
    assert isinstance(pixel, tuple)
    return int(pixel[3])


async def get_variant(
    client: httpx.AsyncClient, created: dict[str, Any], query: str, *, accept: str | None = None, **headers: str
) -> httpx.Response:
    if accept is not None:
        headers["Accept"] = accept
    return await client.get(f"{created['url']}?{query}", headers=headers)


def decoded(response: httpx.Response) -> Image.Image:
    """The answer's picture, after checking it is whole and of the type the headers say."""
    assert response.status_code == 200, response.text
    picture = open_image(response.content)
    picture.load()
    assert response.headers["content-type"] == CONTENT_TYPES[picture.format or ""]
    return picture


def renders(app: FastAPI) -> int:
    variants: VariantService = app.state.variants
    return variants.renders


def variant_keys(settings: Settings, checksum: str) -> set[str]:
    return {key for key in bucket_keys(settings) if key.startswith(f"variants/{checksum[:2]}/{checksum}/")}


async def variant_row_count(app: FastAPI, checksum: str) -> int:
    async with app.state.sessionmaker() as session:
        count: int = await session.scalar(
            select(func.count()).select_from(Variant).where(Variant.source_checksum == checksum)
        )
        return count


# --- what comes out: format, width, orientation, animation, transparency, no metadata ---------------


@pytest.mark.parametrize("image_format", ["jpeg", "png", "webp", "avif"])
async def test_each_width_and_format_gives_that_format_at_that_width_never_upscaled(
    client: httpx.AsyncClient, image_format: str
) -> None:
    created = await upload_ok(client, jpeg_of(noisy_photo((1000, 750))), "photo.jpg")
    for width in WIDTHS:
        picture = decoded(await get_variant(client, created, f"w={width}&format={image_format}"))
        assert picture.format == PILLOW_NAMES[image_format]
        expected_width = min(width, 1000)  # 1200 would be an upscale: the full size instead
        assert picture.size == (expected_width, round(750 * expected_width / 1000))
    assert decoded(await get_variant(client, created, f"format={image_format}")).size == (1000, 750)


async def test_a_width_alone_keeps_the_originals_format(client: httpx.AsyncClient) -> None:
    jpeg = await upload_ok(client, make_jpeg(800, 600), "photo.jpg")
    png = await upload_ok(client, png_of(Image.new("RGB", (800, 600), (10, 90, 200))), "drawing.png")
    webp = await upload_ok(client, corpus_bytes("webp_lossy_photo_640x480.webp"), "photo.webp")
    for created, pillow_name in ((jpeg, "JPEG"), (png, "PNG"), (webp, "WEBP")):
        picture = decoded(await get_variant(client, created, "w=300"))
        assert (picture.format, picture.width) == (pillow_name, 300)


async def test_a_still_gif_with_a_width_alone_becomes_a_png(client: httpx.AsyncClient) -> None:
    """GIF is written only for animations: a still GIF's smaller copy is a PNG, not a 422."""
    created = await upload_ok(client, corpus_bytes("gif_static_palette.gif"), "still.gif")
    picture = decoded(await get_variant(client, created, "w=150"))
    assert (picture.format, picture.size) == ("PNG", (150, 112))


@pytest.mark.parametrize(
    ("name", "stored_size"),
    [
        ("jpeg_camera_metadata_orientation_6.jpg", (800, 600)),
        ("webp_exif_gps_xmp_icc_orientation_6.webp", (400, 300)),
        ("png_text_exif_time_icc_orientation_6.png", (400, 300)),
    ],
)
async def test_a_sideways_photo_is_turned_upright_and_carries_no_metadata(
    settings: Settings, name: str, stored_size: tuple[int, int]
) -> None:
    """Kept as uploaded (STRIP_METADATA off): the original has its GPS and orientation, no variant has."""
    original = corpus_bytes(name)
    upright = ImageOps.exif_transpose(open_image(original)).convert("RGB")
    assert upright.size == stored_size[::-1]
    async with running_app(settings.model_copy(update={"strip_metadata": False})) as (_, client):
        created = await upload_ok(client, original, name)
        assert revealing_metadata((await client.get(created["url"])).content)  # the original keeps it
        for image_format in ("jpeg", "png", "webp", "avif"):
            for width in (150, 300):
                response = await get_variant(client, created, f"w={width}&format={image_format}")
                picture = decoded(response)
                assert picture.size == (width, round(width * upright.height / upright.width)), image_format
                assert revealing_metadata(response.content) == {}, image_format
                assert ExifTags.Base.Orientation not in picture.getexif(), image_format
                assert not {"exif", "xmp", "XML:com.adobe.xmp", "comment"} & set(picture.info), image_format
                expected = upright.resize(picture.size, Image.Resampling.LANCZOS)
                assert mean_difference(picture, expected) < SAME_PICTURE, image_format
        # Asked wider than the photo stands (600 x 800 upright): its full size, upright.
        assert decoded(await get_variant(client, created, "w=1200&format=webp")).size == upright.size


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (CHROMIUM_ACCEPT, "AVIF"),
        (SAFARI_ACCEPT, "WEBP"),
        ("*/*", "JPEG"),
        ("image/*", "JPEG"),
        ("image/avif;q=0, image/webp;q=0.5", "WEBP"),
        ("IMAGE/AVIF", "AVIF"),
        (None, "JPEG"),
    ],
)
async def test_auto_takes_avif_then_webp_as_accept_allows_else_the_originals_family(
    client: httpx.AsyncClient, accept: str | None, expected: str
) -> None:
    created = await upload_ok(client, make_jpeg(800, 600, (30, 120, 60)), "photo.jpg")
    response = await get_variant(client, created, "w=300&format=auto", accept=accept)
    picture = decoded(response)
    assert (picture.format, picture.size) == (expected, (300, 225))
    assert response.headers["vary"] == "Accept"


@pytest.mark.parametrize("name", ["gif_animated_10_frames_transparent.gif", "webp_animated_5_frames_alpha.webp"])
async def test_an_animation_stays_animated_in_webp_and_gif_and_gives_its_first_frame_elsewhere(
    client: httpx.AsyncClient, name: str
) -> None:
    original = corpus_bytes(name)
    source = open_image(original)
    frames = getattr(source, "n_frames", 1)
    first_frame = source.convert("RGBA")
    created = await upload_ok(client, original, name)

    for query, accept in (("w=150&format=webp", None), ("w=150&format=auto", CHROMIUM_ACCEPT)):
        animated = decoded(await get_variant(client, created, query, accept=accept))
        assert (animated.format, animated.width, getattr(animated, "n_frames", 1)) == ("WEBP", 150, frames)
    as_gif = decoded(await get_variant(client, created, "w=150&format=auto", accept="image/*"))
    assert (as_gif.format, getattr(as_gif, "n_frames", 1)) == ("GIF", frames)

    for image_format in ("jpeg", "avif", "png"):
        still = decoded(await get_variant(client, created, f"w=150&format={image_format}"))
        assert (still.format, still.width, getattr(still, "n_frames", 1)) == (PILLOW_NAMES[image_format], 150, 1)
    # The first frame itself, lossless at full size.
    full = decoded(await get_variant(client, created, "format=png"))
    assert full.convert("RGBA").tobytes() == first_frame.tobytes()


async def test_transparency_stays_in_png_and_webp_and_is_flattened_on_white_in_jpeg(client: httpx.AsyncClient) -> None:
    created = await upload_ok(client, half_transparent_png(), "cut-out.png")

    as_png = decoded(await get_variant(client, created, "format=auto", accept="image/png,image/*;q=0.8"))
    assert as_png.format == "PNG"
    assert alpha_at(as_png, (25, 50)) == 0
    # Transparent stills prefer WebP (exact alpha) to AVIF.
    as_webp = decoded(await get_variant(client, created, "format=auto", accept=CHROMIUM_ACCEPT))
    assert as_webp.format == "WEBP"
    assert alpha_at(as_webp, (25, 50)) == 0

    as_jpeg = decoded(await get_variant(client, created, "format=jpeg"))
    assert (as_jpeg.format, as_jpeg.mode) == ("JPEG", "RGB")
    white, red = as_jpeg.getpixel((25, 50)), as_jpeg.getpixel((175, 50))
    assert isinstance(white, tuple)
    assert isinstance(red, tuple)
    assert all(channel >= 245 for channel in white)
    assert all(abs(got - want) <= 12 for got, want in zip(red, (200, 30, 30), strict=True))


async def test_a_heic_original_comes_as_jpeg_at_full_size_and_smaller(client: httpx.AsyncClient) -> None:
    created = await upload_ok(client, corpus_bytes("heic_static.heic"), "photo.heic")
    full = decoded(await get_variant(client, created, "format=jpeg"))
    assert (full.format, full.size) == ("JPEG", (480, 360))
    # Without a format, a HEIC's smaller copy is in its family (JPEG): browsers do not show HEIC.
    small = decoded(await get_variant(client, created, "w=150"))
    assert (small.format, small.size) == ("JPEG", (150, 112))


async def test_an_animation_past_the_budget_is_variant_unavailable_and_stays_so(settings: Settings) -> None:
    """10 frames of 160x120 are 192,000 pixels, past a budget of 170,000; 150 px wide they are 168,000."""
    budgeted = settings.model_copy(update={"variant_max_animation_pixels": 170_000})
    async with running_app(budgeted) as (app, client):
        created = await upload_ok(client, corpus_bytes("gif_animated_10_frames_transparent.gif"), "dance.gif")
        refused = await get_variant(client, created, "format=webp")
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert detail["code"] == "VARIANT_UNAVAILABLE"
        assert "smaller width" in detail["details"]["reason"]
        tried = renders(app)
        again = await get_variant(client, created, "format=webp")
        assert (again.status_code, again.json()["detail"]["code"]) == (422, "VARIANT_UNAVAILABLE")
        assert renders(app) == tried  # a variant that cannot be made is not tried again
        smaller = decoded(await get_variant(client, created, "w=150&format=webp"))
        assert getattr(smaller, "n_frames", 1) == 10
        assert decoded(await get_variant(client, created, "format=jpeg")).size == (160, 120)  # a still is no animation


# --- what may be asked -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "w=13",
        "w=abc",
        "w=99999999999999999999",
        "w=-150",
        "w=150.0",
        "w=%EF%BC%91%EF%BC%95%EF%BC%90",  # fullwidth digits
        "w=",
        "w",
        "format=gif",
        "format=",
        "format=JPEG",
        "w=150&w=300",
        "w=150&w=150",
        "format=webp&format=png",
        "size=150",
        "w=150&format=webp&quality=100",
    ],
)
async def test_anything_outside_the_lists_is_invalid_variant_with_the_lists(
    client: httpx.AsyncClient, query: str
) -> None:
    created = await upload_ok(client, make_jpeg(800, 600))
    response = await client.get(f"{created['url']}?{query}")
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "INVALID_VARIANT"
    assert without_request_id(detail["details"]) == INVALID_DETAILS
    head = await client.head(f"{created['url']}?{query}")
    assert (head.status_code, head.content) == (400, b"")


# --- served like originals ---------------------------------------------------------------------------


async def test_a_variant_is_served_with_the_originals_validators_ranges_and_strict_headers(
    client: httpx.AsyncClient,
) -> None:
    created = await upload_ok(client, make_jpeg(800, 600), "sunset.jpg")
    url = f"{created['url']}?w=300&format=webp"
    response = await client.get(url)
    body = response.content
    headers = response.headers
    assert response.status_code == 200
    assert headers["etag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    assert headers["etag"] != f'"{created["checksum"]}"'
    assert headers["content-type"] == "image/webp"
    assert headers["content-length"] == str(len(body))
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert headers["accept-ranges"] == "bytes"
    assert 'filename="sunset-300w.webp"' in headers["content-disposition"]
    assert "vary" not in headers  # an explicit format does not depend on Accept

    cached = await client.get(url, headers={"If-None-Match": headers["etag"]})
    assert (cached.status_code, cached.content, cached.headers["etag"]) == (304, b"", headers["etag"])

    ranged = await client.get(url, headers={"Range": "bytes=10-99"})
    assert (ranged.status_code, ranged.content) == (206, body[10:100])
    assert ranged.headers["content-range"] == f"bytes 10-99/{len(body)}"
    suffix = await client.get(url, headers={"Range": "bytes=-20"})
    assert (suffix.status_code, suffix.content) == (206, body[-20:])

    head = await client.head(url)
    assert (head.status_code, head.content) == (200, b"")
    for name in ("etag", "content-type", "content-length", "cache-control", "content-security-policy"):
        assert head.headers[name] == headers[name], name


async def test_a_head_alone_makes_the_variant_and_the_get_after_it_renders_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    created = await upload_ok(client, make_jpeg(800, 600, (5, 100, 150)))
    head = await client.head(f"{created['url']}?w=600&format=png")
    assert (head.status_code, head.content, head.headers["content-type"]) == (200, b"", "image/png")
    made = renders(app)
    response = await get_variant(client, created, "w=600&format=png")
    assert response.headers["etag"] == head.headers["etag"]
    assert response.headers["content-length"] == head.headers["content-length"] == str(len(response.content))
    assert renders(app) == made


async def test_auto_answers_vary_by_accept_and_so_do_their_304s(client: httpx.AsyncClient) -> None:
    created = await upload_ok(client, make_jpeg(800, 600))
    url = f"{created['url']}?w=150&format=auto"
    avif = await client.get(url, headers={"Accept": CHROMIUM_ACCEPT})
    webp = await client.get(url, headers={"Accept": SAFARI_ACCEPT})
    assert avif.headers["content-type"] == "image/avif"
    assert webp.headers["content-type"] == "image/webp"
    assert avif.headers["etag"] != webp.headers["etag"]
    assert avif.headers["vary"] == webp.headers["vary"] == "Accept"
    cached = await client.get(url, headers={"Accept": CHROMIUM_ACCEPT, "If-None-Match": avif.headers["etag"]})
    assert (cached.status_code, cached.headers["vary"]) == (304, "Accept")
    assert "vary" not in (await client.get(created["url"])).headers  # the original does not vary


# --- made once per content, gone with its last image ------------------------------------------------


async def test_a_variant_is_rendered_once_and_shared_by_every_image_with_that_content(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    photo = make_jpeg(900, 600, (120, 40, 160))
    first = await upload_ok(client, photo, "first.jpg")
    second = await upload_ok(client, photo, "second.jpg")
    assert first["checksum"] == second["checksum"]

    made = await get_variant(client, first, "w=300&format=avif")
    assert made.status_code == 200
    after_first = renders(app)
    assert after_first >= 1
    for created in (first, first, second):
        again = await get_variant(client, created, "w=300&format=avif")
        assert (again.status_code, again.content, again.headers["etag"]) == (200, made.content, made.headers["etag"])
    assert (await client.head(f"{second['url']}?w=300&format=avif")).status_code == 200
    # 1200 is past this photo's size: the same variant as the full size, not another.
    assert (await get_variant(client, second, "w=1200&format=avif")).status_code == 200
    assert (await get_variant(client, second, "format=avif")).status_code == 200
    assert renders(app) == after_first + 1


async def test_concurrent_requests_for_one_variant_render_it_once(app: FastAPI, client: httpx.AsyncClient) -> None:
    created = await upload_ok(client, jpeg_of(noisy_photo((1600, 1200))), "big.jpg")
    before = renders(app)
    responses = await asyncio.gather(*(get_variant(client, created, "w=600&format=avif") for _ in range(6)))
    assert {response.status_code for response in responses} == {200}
    assert len({response.content for response in responses}) == 1
    assert renders(app) == before + 1


async def test_deleting_one_image_keeps_the_shared_variant_and_the_last_delete_removes_it(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    photo = make_jpeg(640, 480, (20, 160, 90))
    first = await upload_ok(client, photo)
    second = await upload_ok(client, photo)
    checksum = first["checksum"]
    for query in ("w=150&format=webp", "w=300&format=jpeg"):
        assert (await get_variant(client, first, query)).status_code == 200
    assert len(variant_keys(settings, checksum)) == 2
    assert await variant_row_count(app, checksum) == 2

    assert (await client.delete(f"/api/v1/images/{first['id']}", headers=token_of(first))).status_code == 204
    kept = await get_variant(client, second, "w=150&format=webp")
    assert kept.status_code == 200
    assert len(variant_keys(settings, checksum)) == 2
    assert await variant_row_count(app, checksum) == 2

    assert (await client.delete(f"/api/v1/images/{second['id']}", headers=token_of(second))).status_code == 204
    assert variant_keys(settings, checksum) == set()
    assert await variant_row_count(app, checksum) == 0
    gone = await get_variant(client, second, "w=150&format=webp")
    assert (gone.status_code, gone.json()["detail"]["code"]) == (404, "IMAGE_NOT_FOUND")


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
async def test_the_variant_lifecycle_on_each_database(settings: Settings, tmp_path: Path, database: str) -> None:
    """Made once, shared, removed with the last image: on PostgreSQL with S3, and on SQLite with a folder."""
    if database == "sqlite":
        database_url = f"sqlite+aiosqlite:///{tmp_path / 'chitram.db'}"
        await anyio.to_thread.run_sync(migrate, database_url)
        settings = settings.model_copy(
            update={"database_url": database_url, "storage_backend": "local", "local_storage_path": tmp_path / "images"}
        )
    photo = make_jpeg(500, 400, (200, 120, 20))
    # The SQLite database is the test's own file; PostgreSQL's shared tables are emptied.
    async with running_app(settings, empty_tables_on_exit=database == "postgresql") as (app, client):
        first = await upload_ok(client, photo)
        second = await upload_ok(client, photo)
        made = await get_variant(client, first, "w=150&format=png")
        assert decoded(made).size == (150, 120)
        rendered = renders(app)
        assert (await get_variant(client, second, "w=150&format=png")).content == made.content
        assert renders(app) == rendered
        for created in (first, second):
            deleted = await client.delete(f"/api/v1/images/{created['id']}", headers=token_of(created))
            assert deleted.status_code == 204
        assert await variant_row_count(app, first["checksum"]) == 0
        if database == "sqlite":
            assert not list((tmp_path / "images" / "variants").rglob("*.*"))
        else:
            assert variant_keys(settings, first["checksum"]) == set()


async def test_a_variant_missing_from_storage_is_made_again(settings: Settings) -> None:
    """As after restoring a backup without `variants/` (operations.md: "they are made again on request")."""
    photo = make_jpeg(700, 500, (60, 60, 200))
    async with running_app(settings, empty_tables_on_exit=False) as (app, client):
        created = await upload_ok(client, photo)
        made = await get_variant(client, created, "w=300&format=webp")
        assert made.status_code == 200
        storage: StorageBackend = app.state.storage
        (key,) = variant_keys(settings, created["checksum"])
        await storage.delete(key)
    async with running_app(settings) as (app, client):
        again = await get_variant(client, created, "w=300&format=webp")
        assert (again.status_code, again.content) == (200, made.content)
        assert renders(app) == 1
        assert variant_keys(settings, created["checksum"]) == {key}


async def test_content_deleted_and_uploaded_again_gets_its_variant_at_the_first_request(settings: Settings) -> None:
    """The process remembers the variant it served; the content's last delete removed its object since."""
    photo = make_jpeg(640, 480, (150, 150, 30))
    async with running_app(settings.model_copy(update={"file_cache_mb": 0})) as (_, client):
        first = await upload_ok(client, photo)
        made = await get_variant(client, first, "w=300&format=jpeg")
        assert made.status_code == 200
        assert (await client.delete(f"/api/v1/images/{first['id']}", headers=token_of(first))).status_code == 204
        again = await upload_ok(client, photo)
        response = await get_variant(client, again, "w=300&format=jpeg")
        assert (response.status_code, response.content) == (200, made.content)


# --- metadata ----------------------------------------------------------------------------------------


async def test_metadata_lists_the_widths_below_the_images_size(client: httpx.AsyncClient) -> None:
    cases = [((1000, 750), [150, 300, 600]), ((600, 400), [150, 300]), ((128, 96), [])]
    for (width, height), expected in cases:
        created = await upload_ok(client, make_jpeg(width, height, (width % 256, 90, 30)))
        assert created["variant_widths"] == expected
        metadata = (await client.get(f"/api/v1/images/{created['id']}")).json()
        assert metadata["variant_widths"] == expected
        for listed in expected:  # each one is a smaller picture
            assert max(decoded(await get_variant(client, created, f"w={listed}")).size) < max(width, height)


async def test_the_placeholder_comes_with_the_thumbnail_and_sketches_the_picture(settings: Settings) -> None:
    picture = Image.new("RGB", (800, 400), (20, 90, 200))
    async with running_app(without_workers(settings), empty_tables_on_exit=False) as (_, client):
        created = await upload_ok(client, jpeg_of(picture, quality=95))
        assert created["placeholder"] is None
        assert (await client.get(f"/api/v1/images/{created['id']}")).json()["placeholder"] is None
    async with running_app(settings) as (_, client):  # its sweeper finds the pending thumbnail
        settled = (await wait_for_thumbnail(client, created["id"])).json()
    assert settled["thumbnail_status"] == "ready"
    thumbhash = base64.b64decode(settled["placeholder"], validate=True)
    width, height, rgba = thumb_hash_to_rgba(thumbhash)
    assert len(rgba) == width * height * 4
    assert 1.6 <= width / height <= 2.4
    red, green, blue, alpha = thumb_hash_to_average_rgba(thumbhash)
    assert abs(red * 255 - 20) < 20
    assert abs(green * 255 - 90) < 20
    assert abs(blue * 255 - 200) < 20
    assert alpha > 0.95


# --- made ahead of time ---------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "served_width"), [((900, 600), 300), ((200, 150), 200)])
async def test_pregenerated_variants_are_made_with_the_thumbnail_and_served_without_rendering(
    settings: Settings, size: tuple[int, int], served_width: int
) -> None:
    """VARIANT_PREGENERATE=300:webp; a picture narrower than 300 gets its full size, as a request would."""
    pregenerating = settings.model_copy(update={"variant_pregenerate": ("300:webp",)})
    async with running_app(pregenerating) as (app, client):
        created = await upload_ok(client, make_jpeg(*size, color=(90, 200, 90)))
        checksum = created["checksum"]
        await wait_for_thumbnail(client, created["id"])  # the job makes them before recording the thumbnail
        keys = variant_keys(settings, checksum)
        assert len(keys) == 1
        assert next(iter(keys)).endswith(".webp")
        made = renders(app)
        assert made == 1
        # Past the picture's size, every width is its full size: one variant, made already.
        queries = ["w=300&format=webp", *(["w=1200&format=webp", "format=webp"] if served_width < 300 else [])]
        for query in queries:
            picture = decoded(await get_variant(client, created, query))
            assert (picture.format, picture.width) == ("WEBP", served_width)
        assert renders(app) == made
        assert variant_keys(settings, checksum) == keys


# --- bounded: a full queue and a time limit answer 503 with Retry-After --------------------------------


async def test_a_full_render_queue_answers_503_with_retry_after_and_a_retry_succeeds(settings: Settings) -> None:
    narrow = settings.model_copy(update={"variant_render_concurrency": 1, "variant_render_queue": 0})
    async with running_app(narrow) as (_, client):
        created = await upload_ok(client, jpeg_of(noisy_photo((2400, 1800))), "big.jpg")
        queries = [f"w={width}&format={image_format}" for image_format in ("avif", "webp", "png") for width in WIDTHS]
        responses = await asyncio.gather(*(get_variant(client, created, query) for query in queries))
        statuses = [response.status_code for response in responses]
        assert set(statuses) <= {200, 503}, statuses
        refused = [query for query, response in zip(queries, responses, strict=True) if response.status_code == 503]
        assert refused, "every render was admitted: the queue was never full"
        for response in responses:
            if response.status_code == 503:
                assert response.json()["detail"]["code"] == "SERVICE_UNAVAILABLE"
                assert int(response.headers["retry-after"]) > 0
        for query in refused:  # one at a time, nothing else rendering
            assert decoded(await get_variant(client, created, query)).format in ("AVIF", "WEBP", "PNG")


async def test_a_request_past_the_time_limit_answers_503_and_its_retry_gets_the_finished_render(
    settings: Settings,
) -> None:
    # A 1200 px AVIF at speed 6 of a noisy photo takes well over 0.2 s on any machine of our kind.
    hurried = settings.model_copy(update={"variant_render_timeout_seconds": 0.2, "variant_avif_speed": 6})
    async with running_app(hurried) as (app, client):
        created = await upload_ok(client, jpeg_of(noisy_photo((1600, 1200))), "big.jpg")
        response = await get_variant(client, created, "w=1200&format=avif")
        assert response.status_code == 503, response.text
        assert response.json()["detail"]["code"] == "SERVICE_UNAVAILABLE"
        assert int(response.headers["retry-after"]) > 0

        async def finished() -> bool:
            return renders(app) == 1

        # The render went on without the request that gave up on it, and was stored once.
        await wait_until(finished, what="the abandoned request's render to finish")
        picture = decoded(await get_variant(client, created, "w=1200&format=avif"))
        assert (picture.format, picture.width) == ("AVIF", 1200)
        assert renders(app) == 1
        assert await variant_row_count(app, created["checksum"]) == 1


# --- S3: stored in the bucket, served from it, or by it ------------------------------------------------


async def test_variants_are_stored_in_s3_under_their_content(client: httpx.AsyncClient, settings: Settings) -> None:
    created = await upload_ok(client, make_jpeg(800, 600))
    response = await get_variant(client, created, "w=600&format=webp")
    assert response.status_code == 200
    (key,) = variant_keys(settings, created["checksum"])
    assert key.endswith(".webp")
    s3 = Minio(
        settings.minio_endpoint,
        access_key=settings.minio_access_key,
        secret_key=settings.minio_secret_key,
        secure=settings.minio_secure,
    )

    def read_object() -> bytes:
        stored = s3.get_object(settings.minio_bucket, key)
        try:
            return stored.read()
        finally:
            stored.close()
            stored.release_conn()

    assert await anyio.to_thread.run_sync(read_object) == response.content


async def test_presigned_redirect_sends_clients_to_the_variant_in_the_object_store(settings: Settings) -> None:
    presigned = settings.model_copy(update={"file_delivery": "presigned-redirect"})
    async with running_app(presigned) as (_, client):
        created = await upload_ok(client, make_jpeg(800, 600), "holiday.jpg")
        response = await get_variant(client, created, "w=300&format=webp")
        assert response.status_code == 302
        assert "vary" not in response.headers
        location = response.headers["location"]
        assert location.startswith(f"http://{settings.minio_endpoint}/")
        assert "/variants/" in location
        negotiated = await get_variant(client, created, "w=300&format=auto", accept=SAFARI_ACCEPT)
        assert (negotiated.status_code, negotiated.headers["vary"]) == (302, "Accept")
        async with httpx.AsyncClient() as s3_client:
            direct = await s3_client.get(location)
            direct_negotiated = await s3_client.get(negotiated.headers["location"])
    assert direct.status_code == 200
    assert direct.headers["content-type"] == "image/webp"
    assert 'filename="holiday-300w.webp"' in direct.headers["content-disposition"]
    picture = decoded(direct)
    assert (picture.format, picture.size) == ("WEBP", (300, 225))
    assert direct_negotiated.content == direct.content


async def test_pregenerated_variants_reach_s3_without_any_request(settings: Settings) -> None:
    pregenerating = settings.model_copy(update={"variant_pregenerate": ("150:avif",)})
    async with running_app(pregenerating) as (_, client):
        created = await upload_ok(client, make_jpeg(640, 480, (10, 10, 120)))

        async def stored() -> set[str] | None:
            return await anyio.to_thread.run_sync(variant_keys, settings, created["checksum"]) or None

        keys = await wait_until(stored, what="the pregenerated variant in the bucket")
    assert [key.rsplit(".", 1)[1] for key in keys] == ["avif"]


async def test_a_warm_variant_answered_before_routing_is_the_routes_answer(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variant this process served and holds in memory skips routing, as a direct link does (ADR 0011)."""
    async with running_app(settings) as (app, client):
        created = await upload_ok(client, make_jpeg(900, 600, (40, 90, 160)))
        await wait_for_thumbnail(client, created["id"])
        chromium = {"Accept": "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"}
        url = f"{created['url']}?w=300&format=auto"
        await warm_near_copy(app, client, url, created["id"])
        routed = await client.get(url, headers=chromium)  # the route serves it and keeps the bytes
        assert routed.status_code == 200
        reached_router = count_routed(app, monkeypatch)

        early = await client.get(url, headers=chromium)
        assert reached_router.paths == []
        assert comparable(early) == comparable(routed)
        assert (early.headers["content-type"], early.headers["vary"]) == ("image/avif", "Accept")
        # Another client's Accept names another variant: not remembered yet, so the route renders it.
        safari_15 = await client.get(url, headers={"Accept": "image/webp,*/*"})
        assert (safari_15.status_code, safari_15.headers["content-type"]) == (200, "image/webp")
        assert len(reached_router.paths) == 1
        # Refused queries, ranges and validators are always the route's.
        assert (await client.get(f"{created['url']}?w=301")).status_code == 400
        ranged = await client.get(url, headers={**chromium, "Range": "bytes=0-9"})
        assert (ranged.status_code, ranged.content) == (206, routed.content[:10])
        revalidated = await client.get(url, headers={**chromium, "If-None-Match": routed.headers["etag"]})
        assert revalidated.status_code == 304
        assert len(reached_router.paths) == 4
