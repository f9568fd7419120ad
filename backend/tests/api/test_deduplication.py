"""Identical content is stored once: each upload keeps its own record, the bytes go with the last one."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import httpx
from fastapi import FastAPI
from PIL import Image

from app.config import Settings
from app.services.content_store import original_key
from tests.api.apps import run_thumbnail_job, running_app, without_workers
from tests.api.helpers import bucket_keys
from tests.api.waiting import wait_for_thumbnail
from tests.factories import bearer, make_jpeg, register, token_of, upload, upload_ok


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same JPEG with a comment segment after SOI: different bytes, the same picture."""
    payload = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def stored_original(created: dict[str, Any]) -> str:
    return original_key(created["checksum"], created["content_type"])


async def test_the_same_picture_uploaded_twice_is_stored_once_with_two_records(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    photo = make_jpeg(320, 240)
    first = await upload_ok(client, with_comment(photo, "taken at home"), "first.jpg")
    account = await register(client, "second@example.com")
    response = await upload(
        client, with_comment(photo, "taken elsewhere"), "second.jpg", headers=bearer(account["access_token"])
    )
    assert response.status_code == 201, response.text
    second = response.json()

    # Two images to their owners: ids, names and delete rights of their own.
    assert first["id"] != second["id"]
    assert (first["filename"], second["filename"]) == ("first.jpg", "second.jpg")
    assert first["delete_token"]
    assert second["delete_token"] is None
    # One content: the comments were stripped, so both are exactly the photo, stored once.
    assert first["checksum"] == second["checksum"] == hashlib.sha256(photo).hexdigest()
    assert first["file_size"] == second["file_size"] == len(photo)
    for created in (first, second):
        download = await client.get(created["url"])
        assert download.content == photo
        assert download.headers["etag"] == f'"{first["checksum"]}"'
    await wait_for_thumbnail(client, first["id"])
    await wait_for_thumbnail(client, second["id"])
    originals = {key for key in bucket_keys(settings) if not key.startswith("thumbnails/")}
    assert originals == {stored_original(first)}


async def test_a_duplicate_of_ready_content_has_its_thumbnail_at_once_and_makes_none(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    photo = make_jpeg(640, 480, color=(20, 160, 90))
    first = await upload_ok(client, photo)
    first = (await wait_for_thumbnail(client, first["id"])).json()
    keys_before = bucket_keys(settings)

    second = await upload_ok(client, with_comment(photo, "again"))

    assert second["thumbnail_status"] == "ready"
    shared = await client.get(second["thumbnail_url"])
    assert shared.status_code == 200
    assert shared.content == (await client.get(first["thumbnail_url"])).content
    assert bucket_keys(settings) == keys_before  # no second original, no second thumbnail


async def test_deleting_one_copy_keeps_the_bytes_the_other_uses_and_the_last_delete_removes_all(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    photo = make_jpeg(300, 200, color=(90, 20, 160))
    first = await upload_ok(client, photo)
    await wait_for_thumbnail(client, first["id"])
    second = await upload_ok(client, photo)

    assert (await client.delete(f"/api/v1/images/{first['id']}", headers=token_of(first))).status_code == 204
    assert (await client.get(first["url"])).status_code == 404
    assert (await client.get(second["url"])).content == photo
    assert (await client.get(second["thumbnail_url"])).status_code == 200
    assert stored_original(second) in bucket_keys(settings)

    assert (await client.delete(f"/api/v1/images/{second['id']}", headers=token_of(second))).status_code == 204
    assert bucket_keys(settings) == set()


async def test_a_duplicate_uploaded_while_the_first_thumbnail_is_pending_takes_it_over(settings: Settings) -> None:
    """Two copies before any thumbnail exists: the later job takes over the first one's file."""
    photo = make_jpeg(500, 400, color=(200, 200, 20))
    async with running_app(without_workers(settings)) as (app, client):
        first = await upload_ok(client, photo)
        second = await upload_ok(client, with_comment(photo, "a copy"))
        assert first["thumbnail_status"] == second["thumbnail_status"] == "pending"

        await run_thumbnail_job(app, first["id"])
        await run_thumbnail_job(app, second["id"])

        metadata = (await client.get(f"/api/v1/images/{second['id']}")).json()
        assert metadata["thumbnail_status"] == "ready"
        thumbnails = {key for key in bucket_keys(settings) if key.startswith("thumbnails/")}
        assert thumbnails == {f"thumbnails/{first['id']}.jpg"}
        await _delete_all(client, [first, second])
        assert bucket_keys(settings) == set()


async def test_stripped_copies_of_one_photo_in_different_formats_stay_apart(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    """Content means bytes: the same picture as JPEG and as PNG is two contents."""
    jpeg = await upload_ok(client, make_jpeg(64, 64))
    png = await upload_ok(client, _png_of(make_jpeg(64, 64)))
    assert jpeg["checksum"] != png["checksum"]
    originals = {key for key in bucket_keys(settings) if key.startswith("originals/")}
    assert originals == {stored_original(jpeg), stored_original(png)}


def _png_of(jpeg: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buffer, "PNG")
    return buffer.getvalue()


async def _delete_all(client: httpx.AsyncClient, images: list[dict[str, Any]]) -> None:
    for image in images:
        response = await client.delete(f"/api/v1/images/{image['id']}", headers=token_of(image))
        assert response.status_code == 204, response.text
