"""Production layouts where the proxy or the object store sends the bytes (FILE_DELIVERY)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from app.config import Settings
from tests.api.apps import running_app
from tests.api.near_copies import comparable, count_routed, warm_near_copy
from tests.factories import make_jpeg, upload_ok


async def test_accel_redirect_hands_the_local_file_to_the_proxy_with_our_headers(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = settings.model_copy(
        update={"storage_backend": "local", "local_storage_path": tmp_path, "file_delivery": "accel-redirect"}
    )
    body = make_jpeg(200, 100)
    async with running_app(local) as (app, client):
        created = await upload_ok(client, body, filename="café.jpg")
        response = await client.get(created["url"])
        assert response.status_code == 200
        assert response.content == b""  # the proxy sends the bytes
        key = response.headers["x-accel-redirect"].removeprefix("/_chitram_files/")
        assert (tmp_path / key).read_bytes() == body  # it names exactly the stored file
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["etag"] == f'"{created["checksum"]}"'
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "filename*=UTF-8''caf%C3%A9.jpg" in response.headers["content-disposition"]
        cached = await client.get(created["url"], headers={"If-None-Match": response.headers["etag"]})
        assert cached.status_code == 304

        # Once the image is held near, the redirect is sent before routing (ADR 0011): the same answer.
        await warm_near_copy(app, client, created["url"], created["id"])
        reached_router = count_routed(app, monkeypatch)
        early = await client.get(created["url"])
        assert reached_router.paths == []
        routed = await client.get(f"/api/v1/images/{created['id'].upper()}/file")
        assert comparable(early) == comparable(routed) == comparable(response)


async def test_presigned_redirect_sends_clients_to_the_object_store_for_the_same_bytes(settings: Settings) -> None:
    presigned = settings.model_copy(update={"file_delivery": "presigned-redirect"})
    body = make_jpeg(300, 200)
    async with running_app(presigned) as (_, client):
        created = await upload_ok(client, body, filename="holiday.jpg")
        response = await client.get(created["url"])
        assert response.status_code == 302
        assert response.headers["cache-control"].startswith("private, max-age=")
        location = response.headers["location"]
        assert location.startswith(f"http://{settings.minio_endpoint}/")
        async with httpx.AsyncClient() as s3_client:
            direct = await s3_client.get(location)
        assert direct.status_code == 200
        assert direct.content == body
        assert direct.headers["content-type"] == "image/jpeg"
        assert 'filename="holiday.jpg"' in direct.headers["content-disposition"]


@pytest.mark.parametrize(
    ("storage_backend", "file_delivery"), [("minio", "accel-redirect"), ("local", "presigned-redirect")]
)
def test_a_delivery_that_does_not_fit_the_storage_is_refused_at_start(storage_backend: str, file_delivery: str) -> None:
    with pytest.raises(ValidationError, match="FILE_DELIVERY"):
        Settings(storage_backend=storage_backend, file_delivery=file_delivery)
