"""Reads on a streaming replica (DATABASE_REPLICA_URL): never older than the client's own writes, and a
replica that goes away costs no error.

A real primary and replica (`tests.pg_replica`); lag is made on purpose by pausing the replica's replay
(`pg_wal_replay_pause()`), and the replica is stopped and hung for real. Where reads ran is proved from
the replica's own view of its sessions (pg_stat_activity) and from `chitram_db_reads_total`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.database import create_engine, create_replica_engine, create_sessionmaker
from app.services.read_routing import PrimaryPosition, ReadRouter
from tests.api.apps import run_thumbnail_job, running_app, without_workers
from tests.api.waiting import wait_until
from tests.conftest import _truncate_tables
from tests.factories import bearer, make_distinct_jpeg, register, upload
from tests.observability.scrapes import METRICS_TOKEN, Sample, scrape, total
from tests.servers import app_servers

if TYPE_CHECKING:
    # Only for annotations: importing it for real before pytest_plugins loads it defeats assertion rewriting.
    from tests.pg_replica import ReplicatedPostgres

READS = "chitram_db_reads_total"
START_TIMEOUT_SECONDS = 120.0
# The router skips a failed replica for 1 s, then probes it; give the return a generous deadline.
RETURN_DEADLINE_SECONDS = 15.0
# A read gives a hung replica REPLICA_ATTEMPT_SECONDS (1 s) before the primary answers; the rest is slack.
HUNG_REPLICA_READ_BOUND_SECONDS = 2.5


@pytest.fixture
async def replication(replicated_postgres: ReplicatedPostgres) -> AsyncIterator[ReplicatedPostgres]:
    """The primary and its replica, running, replaying and caught up, before and after each test."""
    await _restore(replicated_postgres)
    yield replicated_postgres
    await _restore(replicated_postgres)


async def _restore(replication: ReplicatedPostgres) -> None:
    if not replication.replica_running:
        await replication.start_replica()
    await replication.resume_replay()
    await replication.wait_caught_up()


@pytest.fixture
def replica_settings(settings: Settings, replication: ReplicatedPostgres) -> Settings:
    """The production stack (Redis, S3) on the test primary, with its replica for reads."""
    return settings.model_copy(
        update={
            "database_url": replication.primary_url,
            "database_replica_url": replication.replica_url,
            "metrics_token": METRICS_TOKEN,
        }
    )


def without_redis(settings: Settings) -> Settings:
    """No metadata cache: every metadata read is a database read the router places."""
    return settings.model_copy(update={"redis_url": None})


def reads(samples: list[Sample], target: str, reason: str | None = None) -> float:
    if reason is None:
        return total(samples, READS, target=target)
    return total(samples, READS, target=target, reason=reason)


async def every_kind_of_read(client: httpx.AsyncClient, image_id: str, token: str) -> None:
    """Metadata, the thumbnail, the owner's listing and the image's page: each answered, none a 5xx."""
    metadata = await client.get(f"/api/v1/images/{image_id}")
    assert metadata.status_code == 200, metadata.text
    thumbnail = await client.get(f"/api/v1/images/{image_id}/thumbnail")
    assert thumbnail.status_code == 200, thumbnail.text
    listing = await client.get("/api/v1/users/me/images", headers=bearer(token))
    assert listing.status_code == 200, listing.text
    assert image_id in [item["id"] for item in listing.json()["items"]]
    page = await client.get(f"/image/{image_id}")
    assert page.status_code == 200, page.text


async def owned_ready_image(app: FastAPI, client: httpx.AsyncClient, email: str) -> tuple[str, str]:
    """A registered user's token and the id of an image of theirs whose thumbnail is made."""
    token: str = (await register(client, email))["access_token"]
    created = await upload(client, make_distinct_jpeg(), headers=bearer(token))
    assert created.status_code == 201, created.text
    image_id: str = created.json()["id"]
    await run_thumbnail_job(app, image_id)
    return token, image_id


async def test_reads_run_on_the_replica_once_it_has_caught_up(
    replication: ReplicatedPostgres, replica_settings: Settings
) -> None:
    async with running_app(without_workers(without_redis(replica_settings))) as (app, client):
        token, image_id = await owned_ready_image(app, client, "replica-reader@example.com")
        await replication.wait_caught_up()
        sessions_before = await replication.replica_sessions_reading_images()
        before = await scrape(client)

        async def four_on_the_replica() -> bool:
            # A write elsewhere (autovacuum) can put the primary a few bytes ahead for a moment: such a
            # read rightly runs on the primary, so the reads are repeated until four ran on the replica.
            await every_kind_of_read(client, image_id, token)
            return reads(await scrape(client), "replica", "caught_up") - reads(before, "replica") >= 4

        await wait_until(four_on_the_replica, what="four reads on the replica")
        # And the replica itself saw them: the app's sessions there last read `images`.
        assert await replication.replica_sessions_reading_images() > sessions_before
        health = (await client.get("/health")).json()
        assert (health["status"], health["database_replica"]) == ("healthy", "connected")


async def test_reads_see_the_clients_writes_on_another_process_while_the_replica_lags(
    replication: ReplicatedPostgres, replica_settings: Settings, raw_redis: Redis, tmp_path: Path
) -> None:
    """Two `python -m app` servers (as behind a load balancer), Redis on: an upload through one is read at
    once through the other, and a delete through one is gone at once on the other, while the replica
    has replayed neither."""
    # No near copies: another process drops its copy when the invalidation's message arrives (ADR 0011),
    # which tests elsewhere wait for. What is checked here is the database read behind the cache.
    settings = replica_settings.model_copy(update={"cache_near_ttl_seconds": 0.0})
    try:
        with app_servers(settings, tmp_path, 2, start_timeout=START_TIMEOUT_SECONDS) as processes:
            (writer_url, _), (reader_url, _) = processes
            async with (
                httpx.AsyncClient(base_url=writer_url) as writer,
                httpx.AsyncClient(base_url=reader_url) as reader,
            ):
                await _check_read_your_writes(replication, writer, reader, raw_redis, settings)
    finally:
        await _truncate_tables(settings.database_url)


async def _check_read_your_writes(
    replication: ReplicatedPostgres,
    writer: httpx.AsyncClient,
    reader: httpx.AsyncClient,
    raw_redis: Redis,
    settings: Settings,
) -> None:
    token: str = (await register(writer, "two-processes@example.com"))["access_token"]
    await replication.wait_caught_up()
    for _ in range(3):  # warm: whatever the reader could remember about the replica, it has seen
        assert (await reader.get("/api/v1/users/me/images", headers=bearer(token))).status_code == 200
    assert reads(await scrape(reader), "replica") >= 1

    await replication.pause_replay()
    created = await upload(writer, make_distinct_jpeg(), headers=bearer(token))
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    assert await replication.on_replica("SELECT count(*) FROM images WHERE id = $1", uuid.UUID(image_id)) == 0
    assert (await reader.get(f"/api/v1/images/{image_id}")).status_code == 200
    assert (await reader.get(f"/api/v1/images/{image_id}/file")).status_code == 200
    assert (await reader.get(f"/image/{image_id}")).status_code == 200
    listing = await reader.get("/api/v1/users/me/images", headers=bearer(token))
    assert [item["id"] for item in listing.json()["items"]] == [image_id]
    thumbnail = await reader.get(f"/api/v1/images/{image_id}/thumbnail")
    assert thumbnail.status_code in {200, 503}, thumbnail.text  # made or being made, never "no such image"
    assert reads(await scrape(reader), "primary", "lagging") >= 4

    # The replica gets the image, and the reader caches its metadata; then the replica lags again.
    async def thumbnail_ready() -> bool:
        return bool((await writer.get(f"/api/v1/images/{image_id}")).json()["thumbnail_ready"])

    await wait_until(thumbnail_ready, what="the thumbnail")
    await replication.resume_replay()
    await replication.wait_caught_up()
    assert (await reader.get(f"/api/v1/images/{image_id}")).headers["X-Cache"] in {"MISS", "HIT"}
    assert (await reader.get(f"/api/v1/images/{image_id}")).headers["X-Cache"] == "HIT"
    await replication.pause_replay()

    deleted = await writer.delete(f"/api/v1/images/{image_id}", headers=bearer(token))
    assert deleted.status_code == 204, deleted.text
    assert await replication.on_replica("SELECT count(*) FROM images WHERE id = $1", uuid.UUID(image_id)) == 1
    for path in (f"/api/v1/images/{image_id}", f"/api/v1/images/{image_id}/file", f"/image/{image_id}"):
        assert (await reader.get(path)).status_code == 404, path
    gone = await reader.get(f"/api/v1/images/{image_id}/thumbnail")
    assert (gone.status_code, gone.json()["detail"]["code"]) == (404, "IMAGE_NOT_FOUND")
    listing = await reader.get("/api/v1/users/me/images", headers=bearer(token))
    assert listing.json()["items"] == []
    # Nothing put the replica's stale row back into the cache.
    assert not await raw_redis.exists(f"{settings.cache_key_prefix}image:{image_id}")


async def test_reads_fall_back_to_the_primary_while_the_replica_is_down_and_return_to_it(
    replication: ReplicatedPostgres, replica_settings: Settings
) -> None:
    async with running_app(without_workers(without_redis(replica_settings))) as (app, client):
        token, image_id = await owned_ready_image(app, client, "replica-outage@example.com")
        await replication.wait_caught_up()
        await every_kind_of_read(client, image_id, token)  # pooled replica connections, about to break

        await replication.stop_replica()
        before = await scrape(client)
        for _ in range(5):
            await every_kind_of_read(client, image_id, token)
        during = await scrape(client)
        assert reads(during, "primary", "replica_failed") > reads(before, "primary", "replica_failed")
        assert reads(during, "primary", "replica_down") > reads(before, "primary", "replica_down")
        assert reads(during, "replica") == reads(before, "replica")
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert (ready.json()["status"], ready.json()["database_replica"]) == ("degraded", "disconnected")
        health = await client.get("/health")
        assert (health.status_code, health.json()["status"]) == (200, "degraded")

        await replication.start_replica()
        await replication.wait_caught_up()

        async def back_on_the_replica() -> bool:
            await every_kind_of_read(client, image_id, token)
            return reads(await scrape(client), "replica") > reads(during, "replica")

        await wait_until(back_on_the_replica, what="reads to return to the replica", within=RETURN_DEADLINE_SECONDS)
        ready = await client.get("/readyz")
        assert (ready.json()["status"], ready.json()["database_replica"]) == ("ready", "connected")


async def test_a_hung_replica_delays_a_read_by_about_a_second_at_most(
    replication: ReplicatedPostgres, replica_settings: Settings
) -> None:
    """SIGSTOP on every replica process: connections are accepted or kept open, and nothing answers."""
    async with running_app(without_workers(without_redis(replica_settings))) as (app, client):
        token, image_id = await owned_ready_image(app, client, "replica-hung@example.com")
        await replication.wait_caught_up()
        await every_kind_of_read(client, image_id, token)
        paths = [f"/api/v1/images/{image_id}", f"/api/v1/images/{image_id}/thumbnail", f"/image/{image_id}"]
        processes = replica_processes(replication)
        for pid in processes:
            os.kill(pid, signal.SIGSTOP)
        try:
            slowest = 0.0
            for _ in range(4):
                for path in [*paths, "/api/v1/users/me/images"]:
                    started = time.monotonic()
                    response = await client.get(path, headers=bearer(token))
                    slowest = max(slowest, time.monotonic() - started)
                    assert response.status_code == 200, response.text
            assert slowest < HUNG_REPLICA_READ_BOUND_SECONDS
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()["database_replica"]) == (200, "disconnected")
        finally:
            for pid in processes:
                os.kill(pid, signal.SIGCONT)


async def test_a_replica_url_that_names_no_standby_sends_reads_to_the_primary(
    replication: ReplicatedPostgres, replica_settings: Settings
) -> None:
    """A DATABASE_REPLICA_URL that names a primary (or a promoted replica): its data need not follow the
    primary's, so no read runs there."""
    mistaken = replica_settings.model_copy(update={"database_replica_url": replication.primary_url})
    async with running_app(without_workers(without_redis(mistaken))) as (app, client):
        token, image_id = await owned_ready_image(app, client, "not-a-standby@example.com")
        before = await scrape(client)
        await every_kind_of_read(client, image_id, token)
        after = await scrape(client)
        assert reads(after, "primary", "not_standby") > reads(before, "primary", "not_standby")
        assert reads(after, "replica") == reads(before, "replica")
        assert (await client.get("/readyz")).json()["database_replica"] == "disconnected"


def replica_processes(replication: ReplicatedPostgres) -> list[int]:
    """The replica's postmaster and every process it started."""
    postmaster = int((replication.replica_data / "postmaster.pid").read_text().split()[0])
    children = [
        int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit() and _parent_of(entry) == postmaster
    ]
    return [postmaster, *children]


def _parent_of(process: Path) -> int | None:
    try:
        fields = (process / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1])


async def test_a_primary_that_does_not_give_its_position_sends_the_reads_to_the_primary(
    replica_settings: Settings,
) -> None:
    """The barrier is one question for many reads: if it hangs (a stuck connection) or fails, the reads
    waiting for it run on the primary within about a second instead of failing or waiting for a
    statement timeout. A live primary that will not answer one query cannot be made for real here, so
    the question's answer is scripted; the engines, the replica and the reads are real."""
    primary = create_engine(replica_settings)
    replica = create_replica_engine(replica_settings)
    assert replica is not None
    try:
        router = ReadRouter(create_sessionmaker(primary), replica)

        async def in_recovery(session: AsyncSession) -> bool:
            answer: bool = (await session.execute(text("SELECT pg_is_in_recovery()"))).scalar_one()
            return answer

        assert await router.run(in_recovery) is True  # caught up: the replica answers

        async def never_answers() -> int:
            await asyncio.Event().wait()
            return 0

        router._position = PrimaryPosition(never_answers)
        started = time.monotonic()
        assert await asyncio.gather(*(router.run(in_recovery) for _ in range(5))) == [False] * 5
        assert time.monotonic() - started < HUNG_REPLICA_READ_BOUND_SECONDS

        async def refused() -> int:
            raise ConnectionRefusedError("the primary's connection was refused")

        router._position = PrimaryPosition(refused)
        assert await router.run(in_recovery) is False
        assert router.state() == "connected"  # the replica did nothing wrong
    finally:
        await primary.dispose()
        await replica.dispose()
