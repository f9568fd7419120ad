"""`python -m app.admin strip-metadata`, run for real on images stored before stripping.

The command runs as the operator runs it (its own process, settings from the environment) against
PostgreSQL, S3 (moto) and Redis, while an API process serves the same images.
"""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys

import httpx
import pytest
from minio import Minio
from sqlalchemy import select

from app.config import Settings
from app.models import Image
from app.services.content_store import original_key
from tests.api.apps import running_app
from tests.api.helpers import bucket_keys
from tests.api.waiting import wait_until
from tests.conftest import BACKEND_DIR, corpus_bytes
from tests.factories import make_jpeg
from tests.image_checks import frames_pixels, revealing_metadata
from tests.integration.legacy_data import LegacyImage, insert_legacy_rows, legacy_image
from tests.servers import app_server_env, settings_env

COMMAND = [sys.executable, "-m", "app.admin", "strip-metadata"]


@pytest.fixture
async def legacy(settings: Settings) -> list[LegacyImage]:
    """Five images of an old release in the test's bucket: two copies of one camera photo, and others."""
    photo = corpus_bytes("jpeg_camera_metadata_orientation_6.jpg")
    thumbnail = make_jpeg(30, 40)
    images = [
        legacy_image(photo, "image/jpeg", (800, 600), thumbnail),
        legacy_image(corpus_bytes("iptc.jpg"), "image/jpeg", (640, 480), thumbnail),
        legacy_image(photo, "image/jpeg", (800, 600), thumbnail),
        legacy_image(corpus_bytes("png_text_exif_time_icc_orientation_6.png"), "image/png", (320, 240), thumbnail),
        legacy_image(make_jpeg(64, 48), "image/jpeg", (64, 48), thumbnail),  # nothing to strip
    ]
    client = Minio(settings.minio_endpoint, settings.minio_access_key, settings.minio_secret_key, secure=False)
    client.make_bucket(settings.minio_bucket)
    for image in images:
        client.put_object(settings.minio_bucket, image.storage_key, io.BytesIO(image.body), len(image.body))
        client.put_object(settings.minio_bucket, image.thumbnail_key, io.BytesIO(image.thumbnail), len(image.thumbnail))
    await insert_legacy_rows(settings.database_url, images, at_head=True)
    return images


def command_env(settings: Settings) -> dict[str, str]:
    return app_server_env(**settings_env(settings))


def run_command(settings: Settings, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *arguments], cwd=BACKEND_DIR, env=command_env(settings), capture_output=True, text=True, timeout=120
    )


async def test_strip_metadata_rewrites_old_originals_and_every_client_sees_the_new_bytes(
    settings: Settings, legacy: list[LegacyImage]
) -> None:
    async with running_app(settings) as (app, client):
        before = {image.id: await _warm_metadata(client, image) for image in legacy}
        assert {metadata["checksum"] for metadata in before.values()} == {image.checksum for image in legacy}

        finished = await asyncio.to_thread(run_command, settings)

        assert finished.returncode == 0, finished.stderr
        assert "5/5 images (100%)" in finished.stdout
        assert "4 stripped, 1 clean, 0 gone, 0 failed" in finished.stdout
        async with app.state.sessionmaker() as session:
            rows = {row.id: row for row in await session.scalars(select(Image))}
        for image in legacy:
            row = rows[image.id]
            assert row.metadata_stripped
            assert row.storage_key == original_key(row.checksum, image.content_type)
            # Every client sees the rewritten original at once: the cache was told (metadata, ETag).
            metadata = (await client.get(f"/api/v1/images/{image.id}")).json()
            assert metadata["checksum"] == row.checksum
            download = await client.get(metadata["url"])
            assert download.headers["etag"] == f'"{row.checksum}"'
            assert int(download.headers["content-length"]) == metadata["file_size"] == len(download.content)
            assert revealing_metadata(download.content) == {}
            assert frames_pixels(download.content) == frames_pixels(image.body)
            assert (await client.get(metadata["thumbnail_url"])).content == image.thumbnail
        # The two copies of one photo now share one original; no old key is left behind.
        assert rows[legacy[0].id].storage_key == rows[legacy[2].id].storage_key
        originals = {row.storage_key for row in rows.values()}
        assert bucket_keys(settings) == originals | {image.thumbnail_key for image in legacy}
        assert len(originals) == 4

        again = await asyncio.to_thread(run_command, settings)
        assert again.returncode == 0, again.stderr
        assert "0 stripped, 0 clean, 0 gone, 0 failed" in again.stdout
        assert bucket_keys(settings) == originals | {image.thumbnail_key for image in legacy}


async def test_strip_metadata_interrupted_part_way_resumes_where_it_stopped(
    settings: Settings, legacy: list[LegacyImage]
) -> None:
    process = await asyncio.to_thread(
        subprocess.Popen,
        [*COMMAND, "--batch-size", "1"],
        cwd=BACKEND_DIR,
        env=command_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first_line = await asyncio.to_thread(process.stdout.readline)
    assert first_line.startswith("strip-metadata: 1/5 images"), first_line
    process.send_signal(signal.SIGINT)  # Ctrl-C after the first batch
    _, stderr = await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 130, stderr
    assert "run the command again" in stderr

    async with running_app(settings) as (app, client):
        async with app.state.sessionmaker() as session:
            done = set(await session.scalars(select(Image.id).where(Image.metadata_stripped.is_(True))))
        assert 1 <= len(done) < len(legacy)
        for image in legacy:  # done or untouched, every image is served whole meanwhile
            metadata = (await client.get(f"/api/v1/images/{image.id}")).json()
            assert frames_pixels((await client.get(metadata["url"])).content) == frames_pixels(image.body)

        resumed = await asyncio.to_thread(run_command, settings)
        assert resumed.returncode == 0, resumed.stderr
        assert f"{len(legacy) - len(done)}/{len(legacy) - len(done)} images (100%)" in resumed.stdout
        async with app.state.sessionmaker() as session:
            left = await session.scalars(select(Image.id).where(Image.metadata_stripped.is_(False)))
            assert list(left) == []
        assert not any(key == image.storage_key for key in bucket_keys(settings) for image in legacy)


async def _warm_metadata(client: httpx.AsyncClient, image: LegacyImage) -> dict[str, object]:
    """The image's metadata once the cache serves it (a loaded machine may time a Redis call out first)."""

    async def cached() -> httpx.Response | None:
        response = await client.get(f"/api/v1/images/{image.id}")
        return response if response.headers["X-Cache"] == "HIT" else None

    body: dict[str, object] = (await wait_until(cached, what=f"cached metadata of {image.id}")).json()
    return body
