"""Metadata and deletion."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from tests.api.helpers import bucket_keys, image_row_count, original_key_of
from tests.factories import make_png, token_of, upload_ok


async def test_metadata_has_the_same_fields_as_the_upload_response(client: httpx.AsyncClient) -> None:
    created = await upload_ok(client, make_png(33, 21), filename="diagram.png")
    response = await client.get(f"/api/v1/images/{created['id']}")
    assert response.status_code == 200
    thumbnail_fields = {"delete_token", "thumbnail_status", "thumbnail_ready", "thumbnail_url"}
    metadata = response.json()
    assert {key: value for key, value in created.items() if key not in thumbnail_fields} == {
        key: value for key, value in metadata.items() if key not in thumbnail_fields
    }
    assert metadata["thumbnail_status"] in ("pending", "ready")


@pytest.mark.parametrize("image_id", [str(uuid.uuid4()), "not-a-uuid", "1", "x" * 300, "💥"])
async def test_unknown_or_malformed_id_is_image_not_found(client: httpx.AsyncClient, image_id: str) -> None:
    response = await client.get(f"/api/v1/images/{image_id}")
    assert response.status_code == 404
    assert response.json()["detail"]["code"] == "IMAGE_NOT_FOUND"


async def test_metadata_does_not_expose_upload_ip_or_storage_key(client: httpx.AsyncClient) -> None:
    created = await upload_ok(client)
    text = (await client.get(f"/api/v1/images/{created['id']}")).text
    assert "203.0.113.7" not in text
    assert "storage_key" not in text


async def test_delete_removes_row_and_stored_file(client: httpx.AsyncClient, app: FastAPI, settings: Settings) -> None:
    created = await upload_ok(client)
    assert bucket_keys(settings) == {original_key_of(created)}
    response = await client.delete(f"/api/v1/images/{created['id']}", headers=token_of(created))
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/api/v1/images/{created['id']}")).status_code == 404
    assert (await client.get(created["url"])).status_code == 404
    assert await image_row_count(app) == 0
    assert bucket_keys(settings) == set()


async def test_second_delete_is_404(client: httpx.AsyncClient) -> None:
    created = await upload_ok(client)
    assert (await client.delete(f"/api/v1/images/{created['id']}", headers=token_of(created))).status_code == 204
    again = await client.delete(f"/api/v1/images/{created['id']}", headers=token_of(created))
    assert again.status_code == 404
    assert again.json()["detail"]["code"] == "IMAGE_NOT_FOUND"
