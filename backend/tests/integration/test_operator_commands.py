"""`python -m app.admin regenerate | scrub | jobs`, run for real, as the operator runs them.

Each command is its own process with its settings from the environment, against PostgreSQL, S3 (moto
over HTTP) and Redis, while an API process serves the same images. JOB_QUEUE=memory unless a test
says otherwise: the command then runs the jobs itself; with JOB_QUEUE=postgres a real worker tier
(`python -m app.worker`) runs them. What a user notices is read from the API; the database only where
the command's record is the point (recipes, findings, variants).
"""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from minio import Minio
from PIL import Image as PILImage
from sqlalchemy import select

from app.config import Settings
from app.jobs.kinds import REGENERATE
from app.jobs.queue import JobQueue
from app.models import Image, IntegrityFinding, MaintenanceRun, Variant, VariantStatus
from app.services.content_store import original_key
from app.services.thumbnail_recipe import thumbnail_recipe
from app.services.variant_naming import encoders_of
from tests.api.apps import run_thumbnail_job, running_app, without_workers
from tests.api.helpers import bucket_keys
from tests.api.waiting import image_row, wait_for_thumbnail, wait_until
from tests.factories import bearer, make_distinct_jpeg, register, upload, upload_ok
from tests.servers import BACKEND_DIR, app_server_env, settings_env, worker_tier

COMMAND = [sys.executable, "-m", "app.admin"]
COMMAND_TIMEOUT_SECONDS = 120


def run_admin(settings: Settings, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = app_server_env(**settings_env(settings))
    return subprocess.run(
        [*COMMAND, *arguments],
        cwd=BACKEND_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )


async def admin(settings: Settings, *arguments: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_admin, settings, *arguments)


def photo(seed: int) -> bytes:
    """An 800x600 JPEG with detail in it (gradients), so thumbnails of two sizes differ; each seed its own."""
    size = (800, 600)
    ramp = PILImage.linear_gradient("L").resize(size)
    flat = PILImage.new("L", size, seed * 40 % 256)
    picture = PILImage.merge("RGB", (ramp, ramp.transpose(PILImage.Transpose.ROTATE_180), flat))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def s3(settings: Settings) -> Minio:
    return Minio(settings.minio_endpoint, settings.minio_access_key, settings.minio_secret_key, secure=False)


def put_object(settings: Settings, key: str, body: bytes) -> None:
    s3(settings).put_object(settings.minio_bucket, key, io.BytesIO(body), len(body))


async def thumbnail_of(client: httpx.AsyncClient, image_id: str) -> bytes:
    response = await client.get(f"/api/v1/images/{image_id}/thumbnail")
    assert response.status_code == 200, response.text
    return response.content


def longest_side(data: bytes) -> int:
    with PILImage.open(io.BytesIO(data)) as picture:
        return max(picture.size)


async def rows(app: FastAPI) -> dict[str, Image]:
    async with app.state.sessionmaker() as session:
        return {str(row.id): row for row in await session.scalars(select(Image))}


def thumbnail_keys(settings: Settings) -> set[str]:
    return {key for key in bucket_keys(settings) if key.startswith("thumbnails/")}


async def test_regenerate_after_a_size_change_makes_new_thumbnails_resumes_and_force_redoes_them(
    settings: Settings,
) -> None:
    before = settings.model_copy(update={"variant_pregenerate": ("150:webp",)})
    # New settings, as after a deployment: smaller thumbnails, and WebP variants of another quality.
    after = before.model_copy(update={"thumbnail_size": 64, "variant_webp_quality": 50})
    async with running_app(before) as (app, client):
        first = await upload_ok(client, photo(1), "first.jpg")
        account = await register(client, "owner@example.com")
        response = await upload(client, photo(2), "second.jpg", headers=bearer(account["access_token"]))
        assert response.status_code == 201, response.text
        second = response.json()
        await wait_for_thumbnail(client, first["id"])
        copy = await upload_ok(client, photo(1), "copy.jpg")  # the first's content: its ready thumbnail is shared
        for created in (first, second, copy):
            assert (await wait_for_thumbnail(client, created["id"])).json()["thumbnail_status"] == "ready"
        old = await rows(app)
        assert old[copy["id"]].thumbnail_key == old[first["id"]].thumbnail_key
        assert old[first["id"]].thumbnail_recipe == old[second["id"]].thumbnail_recipe == thumbnail_recipe(before)
        assert longest_side(await thumbnail_of(client, first["id"])) == 300

        # A selection first (one account's images): only those are made again; the rest is all a run
        # of everything has left to do.
        one = await admin(after, "regenerate", "--user", "Owner@Example.com")
        assert one.returncode == 0, one.stderr
        assert "regenerated 1/1 (100%)" in one.stdout
        assert longest_side(await thumbnail_of(client, second["id"])) == 64
        assert longest_side(await thumbnail_of(client, first["id"])) == 300

        rest = await admin(after, "regenerate", "--all")
        assert rest.returncode == 0, rest.stderr
        assert "regenerated 2/2 (100%)" in rest.stdout
        new = await rows(app)
        for created in (first, second, copy):
            thumbnail = await thumbnail_of(client, created["id"])
            assert longest_side(thumbnail) == 64
            # Every client sees the new thumbnail's placeholder at once: the cache was told.
            metadata = (await client.get(f"/api/v1/images/{created['id']}")).json()
            assert metadata["placeholder"] == new[created["id"]].placeholder
        assert new[first["id"]].placeholder != old[first["id"]].placeholder
        assert new[copy["id"]].thumbnail_key == new[first["id"]].thumbnail_key  # still one shared thumbnail
        assert {row.thumbnail_recipe for row in new.values()} == {thumbnail_recipe(after)}
        # The old thumbnails went with the last row that named them; nothing is left that no row names.
        assert thumbnail_keys(settings) == {row.thumbnail_key for row in new.values()}
        # The pregenerated variants of today's encoders were made for each content.
        fingerprint = encoders_of(after).fingerprint
        async with app.state.sessionmaker() as session:
            made = set(
                await session.scalars(
                    select(Variant.source_checksum).where(
                        Variant.name == f"150-webp-{fingerprint}", Variant.status == VariantStatus.READY
                    )
                )
            )
        assert made == {first["checksum"], second["checksum"]}

        # --force makes every thumbnail again: the same bytes under the same keys, nothing left over.
        forced = await admin(after, "regenerate", "--all", "--force")
        assert forced.returncode == 0, forced.stderr
        assert "regenerated 3/3 (100%)" in forced.stdout
        again = await rows(app)
        assert {image_id: (row.thumbnail_key, row.thumbnail_checksum) for image_id, row in again.items()} == {
            image_id: (row.thumbnail_key, row.thumbnail_checksum) for image_id, row in new.items()
        }
        assert thumbnail_keys(settings) == {row.thumbnail_key for row in again.values()}


async def test_regenerate_naming_an_unknown_image_does_nothing_and_says_which(settings: Settings) -> None:
    async with running_app(settings) as (app, client):
        created = await upload_ok(client, make_distinct_jpeg())
        await wait_for_thumbnail(client, created["id"])
        unknown = str(uuid.uuid4())
        refused = await admin(
            settings.model_copy(update={"thumbnail_size": 64}), "regenerate", "--image", created["id"], unknown
        )
        assert refused.returncode == 1
        assert f"no such image: {unknown}; nothing done" in refused.stderr
        assert (await image_row(app, created["id"])).thumbnail_recipe == thumbnail_recipe(settings)


async def test_scrub_finds_a_missing_and_an_altered_original_and_after_repair_a_rerun_clears_them(
    settings: Settings,
) -> None:
    async with running_app(settings) as (app, client):
        lost, altered, whole = [await upload_ok(client, make_distinct_jpeg(), f"{n}.jpg") for n in range(3)]
        lost_key, altered_key = (original_key(image["checksum"], "image/jpeg") for image in (lost, altered))
        original_bytes = {lost_key: (await client.get(lost["url"])).content}
        original_bytes[altered_key] = (await client.get(altered["url"])).content
        s3(settings).remove_object(settings.minio_bucket, lost_key)
        put_object(settings, altered_key, original_bytes[altered_key][:-10] + b"0123456789")  # a flipped tail

        found = await admin(settings, "scrub")

        assert found.returncode == 1, found.stderr
        assert "3 checked, 1 missing, 1 mismatched" in found.stdout
        assert f"missing   {lost_key} (checksum {lost['checksum']})" in found.stdout
        assert f"mismatch  {altered_key} (checksum {altered['checksum']}, its bytes hash to" in found.stdout
        assert found.stderr.count("WARNING app.jobs.maintenance: scrub:") == 2
        async with app.state.sessionmaker() as session:
            findings = {row.storage_key: row for row in await session.scalars(select(IntegrityFinding))}
        assert {key: row.problem for key, row in findings.items()} == {lost_key: "missing", altered_key: "mismatch"}
        assert findings[lost_key].actual_checksum is None
        assert findings[altered_key].actual_checksum not in (None, altered["checksum"])
        assert whole["checksum"] not in {row.checksum for row in findings.values()}

        for key, body in original_bytes.items():
            put_object(settings, key, body)
        clean = await admin(settings, "scrub")
        assert clean.returncode == 0, clean.stderr
        assert "3 checked, 0 missing, 0 mismatched" in clean.stdout
        async with app.state.sessionmaker() as session:
            assert list(await session.scalars(select(IntegrityFinding))) == []


async def test_scrub_goes_on_from_where_an_interrupted_run_stopped_and_restart_starts_over(
    settings: Settings,
) -> None:
    async with running_app(settings) as (app, client):
        images = sorted(
            [await upload_ok(client, make_distinct_jpeg(), f"{n}.jpg") for n in range(3)],
            key=lambda image: image["checksum"],
        )
        # The place a run interrupted after its first window saves (checksum order); since then the
        # original it had checked went, and one it had not reached was altered.
        async with app.state.sessionmaker() as session:
            session.add(MaintenanceRun(name="scrub", cursor=images[0]["checksum"], done=1))
            await session.commit()
        checked_key, unchecked_key = (original_key(image["checksum"], "image/jpeg") for image in (images[0], images[2]))
        s3(settings).remove_object(settings.minio_bucket, checked_key)
        put_object(settings, unchecked_key, b"not the original")

        resumed = await admin(settings, "scrub", "--window", "1")

        assert resumed.returncode == 1, resumed.stderr
        lines = resumed.stdout.splitlines()
        assert lines[1] == "scrub: going on after 1/3 originals (--restart starts over)", resumed.stdout
        assert lines[2].startswith("scrub: checked 2/3 originals")
        assert "3 checked, 0 missing, 1 mismatched" in resumed.stdout
        assert f"mismatch  {unchecked_key}" in resumed.stdout

        restarted = await admin(settings, "scrub", "--restart")
        assert restarted.returncode == 1, restarted.stderr
        assert "going on" not in restarted.stdout
        assert "3 checked, 1 missing, 1 mismatched" in restarted.stdout
        assert f"missing   {checked_key}" in restarted.stdout
        async with app.state.sessionmaker() as session:
            assert await session.get(MaintenanceRun, "scrub") is None  # a finished walk starts over next time


async def test_regenerate_on_the_worker_tier_survives_ctrl_c_and_holds_a_failed_job_for_jobs_retry(
    settings: Settings, tmp_path: Path
) -> None:
    async with running_app(settings) as (app, client):
        kept = await upload_ok(client, photo(3), "kept.jpg")
        broken = await upload_ok(client, photo(4), "broken.jpg")
        for created in (kept, broken):
            await wait_for_thumbnail(client, created["id"])
        broken_key = original_key(broken["checksum"], "image/jpeg")
        broken_bytes = (await client.get(broken["url"])).content
        s3(settings).remove_object(settings.minio_bucket, broken_key)
        # The new settings, as deployed on the worker tier; the command is run with them.
        queued = settings.model_copy(update={"job_queue": "postgres", "thumbnail_size": 64})
        queue = await JobQueue.open(queued)
        try:
            # Ctrl-C while the command waits for its window (no worker runs yet): its jobs stay queued.
            process = await asyncio.to_thread(
                subprocess.Popen,
                [*COMMAND, "regenerate", "--all"],
                cwd=BACKEND_DIR,
                env=app_server_env(**settings_env(queued)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

            async def window_queued() -> bool:
                return (await queue.depth()).queued.get(REGENERATE, 0) == 2

            await wait_until(window_queued, what="the command's window of jobs", within=COMMAND_TIMEOUT_SECONDS)
            process.send_signal(signal.SIGINT)
            _, stderr = await asyncio.to_thread(process.communicate, timeout=COMMAND_TIMEOUT_SECONDS)
            assert process.returncode == 130, stderr
            assert "interrupted: every thumbnail is either the old one or the new one" in stderr

            with worker_tier(queued, tmp_path / "worker.log"):

                async def window_done() -> bool:
                    depth = await queue.depth()
                    return not depth.queued.get(REGENERATE) and not depth.picked.get(REGENERATE)

                await wait_until(window_done, what="the workers to run the queued jobs", within=60)
                assert longest_side(await thumbnail_of(client, kept["id"])) == 64
                assert longest_side(await thumbnail_of(client, broken["id"])) == 300  # the old one, whole

                listed = await admin(queued, "jobs", "failed")
                assert listed.returncode == 0, listed.stderr
                assert "failed thumbnails: 0" in listed.stdout
                assert "held jobs: 1" in listed.stdout
                held = next(line for line in listed.stdout.splitlines() if line.startswith("  job "))
                assert f"regenerate  {broken['id']}  OriginalMissing: the original {broken_key}" in held
                job_id = held.split()[1]

                put_object(settings, broken_key, broken_bytes)
                retried = await admin(queued, "jobs", "retry", job_id)
                assert retried.returncode == 0, retried.stderr
                assert "1 held jobs queued again" in retried.stdout

                async def regenerated() -> bool:
                    return (await image_row(app, broken["id"])).thumbnail_recipe == thumbnail_recipe(queued)

                await wait_until(regenerated, what="the retried regenerate job", within=30)
                assert longest_side(await thumbnail_of(client, broken["id"])) == 64

                rerun = await admin(queued, "regenerate", "--all")
                assert rerun.returncode == 0, rerun.stderr
                assert "nothing to do" in rerun.stdout
        finally:
            await queue.close()


async def test_jobs_failed_lists_a_garbage_original_and_jobs_retry_after_repair_makes_its_thumbnail(
    settings: Settings,
) -> None:
    async with running_app(without_workers(settings)) as (_, client):
        created = await upload_ok(client, make_distinct_jpeg(), "garbage.jpg")
        key = original_key(created["checksum"], "image/jpeg")
        body = (await client.get(created["url"])).content
        put_object(settings, key, b"\xff\xd8\xff garbage, not a JPEG")
        # Run by another process (one that did not validate the upload), so the job reads the original.
        async with running_app(without_workers(settings), empty_tables_on_exit=False) as (other, _):
            await run_thumbnail_job(other, created["id"])
        failed: dict[str, Any] = (await client.get(f"/api/v1/images/{created['id']}")).json()
        assert failed["thumbnail_status"] == "failed"

        listed = await admin(settings, "jobs", "failed")

        assert listed.returncode == 0, listed.stderr
        assert "failed thumbnails: 1" in listed.stdout
        line = next(line for line in listed.stdout.splitlines() if created["id"] in line)
        assert "attempts 1  garbage.jpg  cannot make a thumbnail: cannot decode the image" in line
        assert "held jobs: none" in listed.stdout

        put_object(settings, key, body)
        retried = await admin(settings, "jobs", "retry", created["id"])
        assert retried.returncode == 0, retried.stderr
        assert "1 failed thumbnails set back to pending" in retried.stdout
        # The cached "failed" went at once: clients see the thumbnail being made again.
        assert (await client.get(f"/api/v1/images/{created['id']}")).json()["thumbnail_status"] == "pending"
        again = await admin(settings, "jobs", "retry", created["id"])
        assert again.returncode == 1
        assert "its thumbnail is pending, not failed; left alone" in again.stderr

        # An API process that makes thumbnails takes it with its next sweep.
        async with running_app(settings, empty_tables_on_exit=False):
            ready = await wait_for_thumbnail(client, created["id"])
        assert ready.json()["thumbnail_status"] == "ready"
        assert longest_side(await thumbnail_of(client, created["id"])) <= 300
