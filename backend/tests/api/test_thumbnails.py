"""Thumbnails over HTTP: made in the background, served like originals, never lost, never made twice."""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from PIL import Image, ImageChops, ImageStat
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.media.thumbnails import render_thumbnail
from app.models import Image as ImageRow
from app.models.base import utc_now
from app.services.storage import StorageBackend
from app.services.thumbnail_jobs import QUEUE_CAPACITY, SWEEP_BATCH, ThumbnailJobs
from tests.api.apps import running_app, without_workers
from tests.api.helpers import bucket_keys, original_key_of
from tests.api.waiting import image_row, wait_for_row, wait_for_thumbnail, wait_until
from tests.conftest import corpus_bytes
from tests.factories import make_jpeg, token_of, upload_ok

CACHE_AND_SECURITY_HEADERS = (
    "Cache-Control",
    "X-Content-Type-Options",
    "Content-Security-Policy",
    "Cross-Origin-Resource-Policy",
)


def thumbnail_url(image_id: str) -> str:
    return f"/api/v1/images/{image_id}/thumbnail"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


async def ready_thumbnail(client: httpx.AsyncClient, body: bytes, filename: str) -> tuple[dict[str, Any], Image.Image]:
    """Upload, wait for the thumbnail, fetch it; return the settled metadata and the decoded thumbnail."""
    created = await upload_ok(client, body, filename)
    settled = (await wait_for_thumbnail(client, created["id"])).json()
    assert settled["thumbnail_status"] == "ready", settled
    response = await client.get(thumbnail_url(created["id"]))
    assert response.status_code == 200
    thumbnail = Image.open(io.BytesIO(response.content))
    assert response.headers["Content-Type"] == Image.MIME[thumbnail.format or ""]
    thumbnail.load()
    return settled, thumbnail


async def test_upload_gets_a_300px_thumbnail_served_like_the_original(client: httpx.AsyncClient) -> None:
    created = await upload_ok(client, make_jpeg(800, 600), "landscape.jpg")
    assert created["thumbnail_ready"] is False
    assert created["thumbnail_url"] is None

    settled = (await wait_for_thumbnail(client, created["id"])).json()
    assert settled["thumbnail_ready"] is True
    assert settled["thumbnail_status"] == "ready"
    assert settled["thumbnail_url"] == thumbnail_url(created["id"])

    response = await client.get(settled["thumbnail_url"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Content-Length"] == str(len(response.content))
    assert response.headers["ETag"] == f'"{hashlib.sha256(response.content).hexdigest()}"'
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    original = await client.get(created["url"])
    for header in CACHE_AND_SECURITY_HEADERS:
        assert response.headers[header] == original.headers[header], header
    thumbnail = Image.open(io.BytesIO(response.content))
    assert (thumbnail.format, thumbnail.size) == ("JPEG", (300, 225))

    not_modified = await client.get(settled["thumbnail_url"], headers={"If-None-Match": response.headers["ETag"]})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    head = await client.head(settled["thumbnail_url"])
    assert head.status_code == 200
    assert head.headers["ETag"] == response.headers["ETag"]
    assert head.content == b""


async def test_thumbnail_is_not_ready_until_it_has_been_made(settings: Settings) -> None:
    async with running_app(without_workers(settings)) as (app, client):
        created = await upload_ok(client)
        metadata = (await client.get(f"/api/v1/images/{created['id']}")).json()
        assert (metadata["thumbnail_status"], metadata["thumbnail_ready"], metadata["thumbnail_url"]) == (
            "pending",
            False,
            None,
        )
        response = await client.get(thumbnail_url(created["id"]))
        assert response.status_code == 404
        detail = response.json()["detail"]
        assert detail["code"] == "THUMBNAIL_NOT_READY"
        assert detail["details"]["thumbnail_status"] == "pending"
        assert int(response.headers["Retry-After"]) >= 1

        thumbnails: ThumbnailJobs = app.state.thumbnails
        await thumbnails.process(uuid.UUID(created["id"]))
        assert (await client.get(thumbnail_url(created["id"]))).status_code == 200


async def test_thumbnail_of_an_unknown_image_is_image_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get(thumbnail_url(str(uuid.uuid4())))
    assert response.status_code == 404
    assert response.json()["detail"]["code"] == "IMAGE_NOT_FOUND"


async def test_rotated_jpeg_gets_an_upright_portrait_thumbnail(client: httpx.AsyncClient) -> None:
    # Stored landscape 480x360 with EXIF orientation 6: displayed as a 360x480 portrait.
    _metadata, thumbnail = await ready_thumbnail(client, corpus_bytes("flower_orientation_6.jpg"), "flower.jpg")
    assert (thumbnail.format, thumbnail.size) == ("JPEG", (225, 300))
    assert thumbnail.getexif().get(0x0112, 1) == 1  # turned once, and not to be turned again by the viewer


async def test_rotated_square_jpeg_thumbnail_matches_the_upright_picture(client: httpx.AsyncClient) -> None:
    _metadata, thumbnail = await ready_thumbnail(client, corpus_bytes("hopper_orientation_6.jpg"), "hopper.jpg")
    assert thumbnail.size == (128, 128)
    upright = Image.open(io.BytesIO(corpus_bytes("hopper.jpg"))).convert("RGB")
    as_stored = Image.open(io.BytesIO(corpus_bytes("hopper_orientation_6.jpg"))).convert("RGB")

    def mean_difference(other: Image.Image) -> float:
        return sum(ImageStat.Stat(ImageChops.difference(thumbnail.convert("RGB"), other)).mean) / 3

    assert mean_difference(upright) < 15
    assert mean_difference(as_stored) > 3 * mean_difference(upright)


async def test_transparent_png_gets_a_png_thumbnail_with_alpha(client: httpx.AsyncClient) -> None:
    picture = Image.new("RGBA", (600, 400), (10, 120, 200, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 300, 400))  # left half fully transparent
    _metadata, thumbnail = await ready_thumbnail(client, png_bytes(picture), "clear.png")
    assert (thumbnail.format, thumbnail.mode, thumbnail.size) == ("PNG", "RGBA", (300, 200))
    alpha = thumbnail.getchannel("A")
    assert alpha.getpixel((10, 100)) == 0
    assert alpha.getpixel((290, 100)) == 255


async def test_corpus_transparent_png_keeps_its_transparency(client: httpx.AsyncClient) -> None:
    _metadata, thumbnail = await ready_thumbnail(client, corpus_bytes("transparent.png"), "transparent.png")
    assert (thumbnail.format, thumbnail.size) == ("PNG", (200, 150))  # never upscaled
    assert thumbnail.mode in ("RGBA", "LA")
    minimum_alpha, _maximum = ImageStat.Stat(thumbnail.getchannel("A")).extrema[0]
    assert minimum_alpha < 255


async def test_grayscale_png_gets_a_grayscale_thumbnail(client: httpx.AsyncClient) -> None:
    picture = Image.new("L", (500, 1000), 90)
    _metadata, thumbnail = await ready_thumbnail(client, png_bytes(picture), "gray.png")
    assert thumbnail.size == (150, 300)
    assert thumbnail.mode == "L"
    assert abs(ImageStat.Stat(thumbnail).mean[0] - 90) < 3


async def test_delete_removes_the_thumbnail_too(client: httpx.AsyncClient, settings: Settings) -> None:
    created = await upload_ok(client, make_jpeg(640, 480))
    await wait_for_thumbnail(client, created["id"])
    assert bucket_keys(settings) == {original_key_of(created), f"thumbnails/{created['id']}.jpg"}

    assert (await client.delete(f"/api/v1/images/{created['id']}", headers=token_of(created))).status_code == 204
    assert bucket_keys(settings) == set()
    assert (await client.get(thumbnail_url(created["id"]))).status_code == 404


async def test_job_starts_from_the_frame_the_upload_decoded(settings: Settings) -> None:
    """One decode per JPEG upload: the job renders from validation's frame, not from the stored original.

    The original is removed from storage behind the service's back only to show that the job never
    reads it; the thumbnail is still exactly the one the stored bytes would give.
    """
    data = make_jpeg(1600, 1200)
    async with running_app(without_workers(settings)) as (app, client):
        created = await upload_ok(client, data)
        storage: StorageBackend = app.state.storage
        await storage.delete(original_key_of(created))
        await app.state.thumbnails.process(uuid.UUID(created["id"]))
        response = await client.get(thumbnail_url(created["id"]))
        assert response.status_code == 200
        assert response.content == render_thumbnail(io.BytesIO(data), max_side=settings.thumbnail_size).data


@pytest.mark.parametrize("decided", ["failed", "ready"])
async def test_a_job_whose_lease_ran_out_keeps_what_the_job_that_took_over_decided(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, decided: str
) -> None:
    """A job that outlived its lease finishes after the job that took over settled the row: it must not
    overwrite that state (readers may have cached it), and its file is kept only if it is the ready one.

    The takeover is written between this job's render and its finish: a lease running out mid-render
    cannot be timed for real, so the test writes what the other job would have.
    """
    async with running_app(without_workers(settings)) as (app, client):
        created = await upload_ok(client)
        image_id = uuid.UUID(created["id"])
        key = f"thumbnails/{created['id']}.jpg"
        jobs: ThumbnailJobs = app.state.thumbnails
        render = jobs._render
        other_job = (
            {"thumbnail_status": "failed", "thumbnail_error": "gave up after 5 attempts: test"}
            if decided == "failed"
            else {"thumbnail_status": "ready", "thumbnail_key": key, "thumbnail_error": "made by the other job"}
        )

        async def render_then_overtaken(*args: Any) -> Any:
            rendered = await render(*args)
            async with app.state.sessionmaker() as session, session.begin():
                await session.execute(update(ImageRow).where(ImageRow.id == image_id).values(**other_job))
            return rendered

        monkeypatch.setattr(jobs, "_render", render_then_overtaken)
        await jobs.process(image_id)

        row = await image_row(app, created["id"])
        assert (row.thumbnail_status, row.thumbnail_error) == (
            other_job["thumbnail_status"],
            other_job["thumbnail_error"],
        )
        storage: StorageBackend = app.state.storage
        assert await storage.exists(key) is (decided == "ready")


async def test_a_claim_is_renewed_while_its_process_lives_and_taken_over_soon_after_it_dies(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that makes thumbnails inserts the row already claimed, so its job needs no claim.

    The claim is short and renewed while the job waits or runs: another process sweeping all along
    leaves it alone. The first process then "dies" with the job unfinished (its job is held, and
    cancelled with the app, without giving the claim back: a death cannot be timed for real in
    one test process; tests/integration/test_worker_tier.py kills real processes). Its claim runs out
    within a lease, and another process makes the thumbnail without anyone acting.
    """
    lease = 1.5
    short = settings.model_copy(update={"job_lease_seconds": lease})
    async with running_app(short, empty_tables_on_exit=False) as (first, client):
        never = anyio.Event()

        async def held(_image_id: uuid.UUID) -> None:
            await never.wait()

        monkeypatch.setattr(first.state.thumbnails, "process", held)
        created = await upload_ok(client)
        row = await image_row(first, created["id"])
        assert (row.thumbnail_status, row.thumbnail_attempts) == ("pending", 1)
        assert row.thumbnail_lease_until is not None
        assert row.thumbnail_lease_until <= utc_now() + timedelta(seconds=lease)
        async with running_app(short, empty_tables_on_exit=False) as (other, _client):  # sweeping every 0.2 s
            await anyio.sleep(lease * 3)
            row = await image_row(other, created["id"])
        assert (row.thumbnail_status, row.thumbnail_attempts) == ("pending", 1)  # renewed: nobody took it
        assert row.thumbnail_lease_until is not None
        assert row.thumbnail_lease_until > utc_now()
    died = utc_now()

    async with running_app(short) as (survivor, _client):
        settled = await wait_for_row(
            survivor, created["id"], lambda row: row.thumbnail_status == "ready", what="the takeover"
        )
        assert utc_now() - died < timedelta(seconds=lease + 5)
        assert settled.thumbnail_attempts == 2


async def test_uploads_are_not_claimed_while_the_thumbnail_queue_is_half_full(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst that fills the queue drops ids; their rows must be free for the sweeper, not claimed.

    The jobs are held (their processing waits on an event) so the queue fills for certain.
    """
    async with running_app(settings) as (app, client):
        jobs: ThumbnailJobs = app.state.thumbnails
        release = anyio.Event()

        async def held(_image_id: uuid.UUID) -> None:
            await release.wait()

        monkeypatch.setattr(jobs, "process", held)
        claimed = await upload_ok(client)
        while jobs.queued <= QUEUE_CAPACITY // 2:  # the held jobs take a few first
            jobs.enqueue(uuid.uuid4())
            await anyio.lowlevel.checkpoint()
        not_claimed = await upload_ok(client)
        for _ in range(QUEUE_CAPACITY):
            jobs.enqueue(uuid.uuid4())  # full: the ids beyond it are dropped
        dropped = await upload_ok(client)
        for created, lease in ((claimed, True), (not_claimed, False), (dropped, False)):
            row = await image_row(app, created["id"])
            assert (row.thumbnail_lease_until is not None, row.thumbnail_attempts) == (lease, int(lease))
        release.set()
        monkeypatch.undo()

        async def queue_drained() -> bool:
            return jobs.queued == 0

        await wait_until(queue_drained, what="the queue of unknown ids to drain")
        await jobs.sweep_once()  # what every sweep does: the dropped upload's free row is found at once
        await wait_for_row(app, dropped["id"], lambda row: row.thumbnail_status == "ready", what="the dropped job")


async def test_a_backlog_larger_than_a_sweep_is_drained_without_waiting_an_interval_per_batch(
    settings: Settings,
) -> None:
    """Jobs found by sweeps (after a restart, or dropped by a full queue) are taken batch after batch."""
    backlog = SWEEP_BATCH + SWEEP_BATCH // 2
    async with running_app(without_workers(settings), empty_tables_on_exit=False) as (_dead, client):
        created = [await upload_ok(client, make_jpeg(64, 48)) for _ in range(backlog)]
    # Far longer than the test may take: only the sweep that follows a full batch can find the rest.
    patient = settings.model_copy(update={"thumbnail_sweep_interval_seconds": 600.0})
    async with running_app(patient) as (survivor, _client):
        for image in (created[0], created[-1]):
            await wait_for_row(survivor, image["id"], lambda row: row.thumbnail_status == "ready", what="the backlog")


async def test_thumbnail_whose_job_was_lost_is_made_by_another_process_without_a_request(
    settings: Settings,
) -> None:
    # The first process accepts the uploads and dies before making any thumbnail.
    async with running_app(without_workers(settings), empty_tables_on_exit=False) as (dead, client):
        never_started = await upload_ok(client)
        died_mid_job = await upload_ok(client)
        # A worker that claimed this job and died: its lease runs out shortly.
        async with dead.state.sessionmaker() as session, session.begin():
            await session.execute(
                update(ImageRow)
                .where(ImageRow.id == uuid.UUID(died_mid_job["id"]))
                .values(thumbnail_lease_until=utc_now() + timedelta(seconds=1), thumbnail_attempts=1)
            )

    async with running_app(settings) as (survivor, client):
        # No request: the survivor's own sweep finds both jobs.
        for created in (never_started, died_mid_job):
            await wait_for_row(
                survivor, created["id"], lambda row: row.thumbnail_status == "ready", what="the lost thumbnail"
            )
        assert (await image_row(survivor, never_started["id"])).thumbnail_attempts == 1
        assert (await image_row(survivor, died_mid_job["id"])).thumbnail_attempts == 2
        for created in (never_started, died_mid_job):
            assert (await client.get(thumbnail_url(created["id"]))).status_code == 200
        assert f"thumbnails/{died_mid_job['id']}.jpg" in bucket_keys(settings)


async def test_transient_failure_is_retried_until_the_thumbnail_is_made(settings: Settings, tmp_path: Path) -> None:
    local = settings.model_copy(
        update={"storage_backend": "local", "local_storage_path": tmp_path / "images", "thumbnail_max_attempts": 50}
    )
    async with running_app(without_workers(local)) as (_api, client):
        created = await upload_ok(client)
        stored = tmp_path / "images" / original_key_of(created)
        aside = tmp_path / "aside.jpg"
        stored.rename(aside)  # the original is briefly unreadable, as during a storage hiccup

        worker_settings = local.model_copy(update={"thumbnail_retry_base_seconds": 0.05})
        async with running_app(worker_settings, empty_tables_on_exit=False) as (worker, _worker_client):
            failed_once = await wait_for_row(
                worker,
                created["id"],
                lambda row: row.thumbnail_attempts >= 1 and row.thumbnail_error is not None,
                what="a first failed attempt",
            )
            assert failed_once.thumbnail_status == "pending"
            assert failed_once.thumbnail_error
            pending = await client.get(thumbnail_url(created["id"]))
            assert pending.status_code == 404
            assert pending.json()["detail"]["details"]["thumbnail_status"] == "pending"

            aside.rename(stored)
            settled = (await wait_for_thumbnail(client, created["id"])).json()
            assert settled["thumbnail_status"] == "ready"
            row = await image_row(worker, created["id"])
            assert row.thumbnail_attempts >= 2
            assert row.thumbnail_error is None
        assert (await client.get(thumbnail_url(created["id"]))).status_code == 200


async def test_thumbnail_that_keeps_failing_transiently_is_given_up_after_max_attempts(
    settings: Settings, tmp_path: Path
) -> None:
    local = settings.model_copy(
        update={
            "storage_backend": "local",
            "local_storage_path": tmp_path,
            "thumbnail_max_attempts": 3,
            "thumbnail_retry_base_seconds": 0.05,
        }
    )
    async with running_app(without_workers(local), empty_tables_on_exit=False) as (_api, client):
        created = await upload_ok(client)
        (tmp_path / original_key_of(created)).unlink()  # gone for good, though no one can tell at first

    async with running_app(local) as (worker, client):
        settled = (await wait_for_thumbnail(client, created["id"])).json()
        assert settled["thumbnail_status"] == "failed"
        row = await image_row(worker, created["id"])
        assert row.thumbnail_attempts == 3
        assert row.thumbnail_error is not None
        assert "gave up after 3 attempts" in row.thumbnail_error
        reason = (await client.get(thumbnail_url(created["id"]))).json()["detail"]["details"]["reason"]
        assert "gave up" in reason


async def test_image_that_cannot_be_thumbnailed_is_marked_failed_and_not_retried(settings: Settings) -> None:
    async with running_app(without_workers(settings), empty_tables_on_exit=False) as (api, client):
        created = await upload_ok(client)
        # The stored original rots: bytes that no decoder accepts.
        storage: StorageBackend = api.state.storage
        garbage = b"\xff\xd8\xff" + b"\x00garbage" * 100
        await storage.save(original_key_of(created), io.BytesIO(garbage), len(garbage), "image/jpeg")

    async with running_app(settings) as (worker, client):
        settled = (await wait_for_thumbnail(client, created["id"])).json()
        assert (settled["thumbnail_status"], settled["thumbnail_ready"], settled["thumbnail_url"]) == (
            "failed",
            False,
            None,
        )
        response = await client.get(thumbnail_url(created["id"]))
        assert response.status_code == 404
        detail = response.json()["detail"]
        assert detail["code"] == "THUMBNAIL_NOT_READY"
        assert detail["details"]["thumbnail_status"] == "failed"
        assert "decode" in detail["details"]["reason"]

        thumbnails: ThumbnailJobs = worker.state.thumbnails
        assert await thumbnails.sweep_once() == 0  # nothing left to retry
        await thumbnails.process(uuid.UUID(created["id"]))
        assert (await image_row(worker, created["id"])).thumbnail_attempts == 1
        assert f"thumbnails/{created['id']}.jpg" not in bucket_keys(settings)
        # The failure is what the cache serves too, once warm.
        assert (await client.get(f"/api/v1/images/{created['id']}")).json()["thumbnail_status"] == "failed"


async def test_two_processes_make_each_thumbnail_exactly_once(settings: Settings) -> None:
    image_count = 16
    async with (
        running_app(settings) as (first_worker, _first),
        running_app(settings, empty_tables_on_exit=False),
        running_app(without_workers(settings), empty_tables_on_exit=False) as (_api, client),
    ):
        # Both workers sweep the same table every 0.2 s, so they race for every one of these.
        uploaded = [await upload_ok(client) for _ in range(image_count)]
        ids = [created["id"] for created in uploaded]

        sessionmaker: async_sessionmaker[AsyncSession] = first_worker.state.sessionmaker

        async def all_ready() -> bool:
            async with sessionmaker() as session:
                pending = await session.scalar(
                    select(func.count()).select_from(ImageRow).where(ImageRow.thumbnail_status != "ready")
                )
            return pending == 0

        await wait_until(all_ready, what="every thumbnail", within=30)
        async with sessionmaker() as session:
            attempts = {str(row.id): row.thumbnail_attempts for row in await session.scalars(select(ImageRow))}
        assert attempts == dict.fromkeys(ids, 1)
        originals = {original_key_of(created) for created in uploaded}
        assert bucket_keys(settings) == originals | {f"thumbnails/{i}.jpg" for i in ids}
