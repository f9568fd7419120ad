"""The app on a real Redis Cluster (three masters, three replicas): cache, invalidation, rate limits, failover.

Every cluster is started from Debian's `redis-server` by `tests.redis_cluster`; nothing is mocked.
The tests that kill a node get a cluster of their own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot

from app.config import Settings
from app.services.cache import Metadata, MetadataCache
from app.services.near_cache import DEAD_AFTER_SECONDS
from app.services.redis_client import RedisHandle, split_cluster_url
from tests.api.apps import run_thumbnail_job, running_app, without_workers
from tests.api.near_copies import holds, process_cache, warm_near_copy
from tests.api.waiting import wait_until
from tests.factories import make_jpeg, token_of, upload, upload_ok
from tests.redis_cluster import ClusterNodeServer, LocalRedisCluster, running_redis_cluster

UPLOAD_LIMIT = 3
IMAGES_TO_SPREAD = 12
# Announcements cross loopback connections and the cluster bus; a generous bound that still says "moments".
ANNOUNCEMENT_DEADLINE_SECONDS = 2.0
# node timeout (1 s) + failure agreement + the replica's election delay (0.5-1 s), with margin.
FAILOVER_DEADLINE_SECONDS = 15.0
# A call meeting a hung node costs one socket timeout (0.5 s), never more.
MAX_DEGRADED_CALL_SECONDS = 0.9
# The breaker's 1 s cool-down, then the first call re-reads the topology: a generous bound.
RECOVERY_DEADLINE_SECONDS = 10.0
METADATA = {
    "id": "5c1d9e3a-0000-4000-8000-000000000003",
    "filename": "heron.jpg",
    "thumbnail_ready": True,
    "storage_key": "originals/5c/heron.jpg",
}


@pytest.fixture(scope="module")
async def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalRedisCluster]:
    """One cluster for the tests that kill nothing."""
    async with running_redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
async def cluster(shared_cluster: LocalRedisCluster) -> LocalRedisCluster:
    """The shared cluster, emptied before the test."""
    client = cluster_client(shared_cluster)
    try:
        await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    finally:
        await client.aclose()
    return shared_cluster


@pytest.fixture
async def own_cluster(tmp_path: Path) -> AsyncIterator[LocalRedisCluster]:
    """A cluster for this test alone, to kill nodes of."""
    async with running_redis_cluster(tmp_path / "redis-cluster") as cluster:
        yield cluster


def cluster_client(cluster: LocalRedisCluster) -> RedisCluster:
    """A separate cluster client on the running nodes, to look at what the app stored."""
    seeds = [ClusterNode("127.0.0.1", node.port) for node in cluster.nodes if node.running]
    return RedisCluster(startup_nodes=seeds, socket_connect_timeout=1, socket_timeout=2)


def on_cluster(settings: Settings, cluster: LocalRedisCluster, **overrides: Any) -> Settings:
    """An API process on the cluster that makes no thumbnails itself (each test runs the jobs it needs)."""
    return without_workers(settings).model_copy(update={"redis_url": cluster.url, **overrides})


def metadata_url(image_id: str) -> str:
    return f"/api/v1/images/{image_id}"


def cache_key(image_id: str) -> str:
    return f"chitram:image:{image_id}"


async def ready_image(app: FastAPI, client: httpx.AsyncClient) -> dict[str, Any]:
    created = await upload_ok(client)
    await run_thumbnail_job(app, created["id"])
    return created


async def x_cache(client: httpx.AsyncClient, image_id: str) -> str:
    response = await client.get(metadata_url(image_id))
    assert response.status_code == 200, response.text
    status: str = response.headers["X-Cache"]
    return status


async def health(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/health")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def keys_by_master(cluster: LocalRedisCluster, pattern: str) -> dict[int, set[bytes | str]]:
    """The keys matching `pattern` on each master (by port), asking each master alone."""
    found: dict[int, set[bytes | str]] = {}
    for master in await cluster.masters():
        client = master.client()
        try:
            found[master.port] = set(await client.keys(pattern))
        finally:
            await client.aclose()
    return found


# --- the URL ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "first", "others"),
    [
        ("redis+cluster://10.0.0.1:7000", "redis://10.0.0.1:7000", []),
        (
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7001,10.0.0.3",
            "redis://10.0.0.1:7000",
            [("10.0.0.2", 7001), ("10.0.0.3", 6379)],
        ),
        (
            "rediss+cluster://app:s3cret@a.example:7000,[::1]:7001/?ssl_cert_reqs=none",
            "rediss://app:s3cret@a.example:7000/?ssl_cert_reqs=none",
            [("::1", 7001)],
        ),
    ],
)
def test_a_cluster_url_names_its_seed_nodes(url: str, first: str, others: list[tuple[str, int]]) -> None:
    assert split_cluster_url(url) == (first, others)


# --- cache, invalidation and limits on a healthy cluster --------------------------------------------


async def test_metadata_is_cached_on_the_cluster_with_its_keys_spread_over_the_masters(
    settings: Settings, cluster: LocalRedisCluster
) -> None:
    async with running_app(on_cluster(settings, cluster)) as (app, client):
        created = [await ready_image(app, client) for _ in range(IMAGES_TO_SPREAD)]
        for image in created:
            assert await x_cache(client, image["id"]) == "MISS"
            assert await x_cache(client, image["id"]) == "HIT"
        report = await health(client)
        assert (report["status"], report["cache"], report["rate_limiter"]) == ("healthy", "connected", "redis")

    stored = await keys_by_master(cluster, "chitram:image:*")
    assert set().union(*stored.values()) == {cache_key(image["id"]).encode() for image in created}
    # Twelve keys on one master of three would be a 1-in-59049 chance: the keys are spread by slot.
    assert sum(1 for keys in stored.values() if keys) >= 2, stored
    client_view = cluster_client(cluster)
    try:
        ttl = await client_view.ttl(cache_key(created[0]["id"]))
        assert 0 < ttl <= settings.cache_ttl_seconds
    finally:
        await client_view.aclose()


async def test_delete_through_another_app_drops_the_near_copy_and_the_key_on_the_cluster(
    settings: Settings, cluster: LocalRedisCluster
) -> None:
    async with (
        running_app(on_cluster(settings, cluster)) as (app, client),
        running_app(on_cluster(settings, cluster), empty_tables_on_exit=False) as (other_app, other_client),
    ):
        created = [await ready_image(app, client) for _ in range(3)]
        for image in created:
            await warm_near_copy(app, client, metadata_url(image["id"]), image["id"])
            await warm_near_copy(other_app, other_client, metadata_url(image["id"]), image["id"])

        for image in created:
            deleted = await other_client.delete(metadata_url(image["id"]), headers=token_of(image))
            assert deleted.status_code == 204

        async def gone_in_the_first_app() -> bool:
            answers = [await client.get(metadata_url(image["id"])) for image in created]
            return all(answer.status_code == 404 for answer in answers)

        await wait_until(
            gone_in_the_first_app, what="the deletes to reach the first app", within=ANNOUNCEMENT_DEADLINE_SECONDS
        )
    stored = await keys_by_master(cluster, "chitram:image:*")
    assert set().union(*stored.values()) == set()


async def test_two_apps_share_one_rate_limit_on_the_cluster(settings: Settings, cluster: LocalRedisCluster) -> None:
    limited = on_cluster(settings, cluster, rate_limit_per_minute=UPLOAD_LIMIT)
    async with running_app(limited) as (_first, first), running_app(limited) as (_second, second):
        assert (await upload(first, make_jpeg())).status_code == 201
        assert (await upload(second, make_jpeg())).status_code == 201
        third = await upload(first, make_jpeg())
        assert third.status_code == 201
        assert third.headers["RateLimit-Remaining"] == "0"
        for client in (second, first):
            refused = await upload(client, make_jpeg())
            assert refused.status_code == 429
            assert refused.json()["detail"]["code"] == "RATE_LIMIT_EXCEEDED"
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert (await health(first))["rate_limiter"] == "redis"
    stored = await keys_by_master(cluster, "chitram:ratelimit*")
    assert set().union(*stored.values()), "the counts are kept in the cluster"


# --- a node dies ----------------------------------------------------------------------------------


async def test_a_master_dies_requests_are_answered_from_the_database_and_the_cache_returns_after_failover(
    settings: Settings, own_cluster: LocalRedisCluster
) -> None:
    # No near copy: every read asks the cluster, so what the outage does to a read shows in X-Cache.
    update = {"cache_near_ttl_seconds": 0, "rate_limit_per_minute": 100}
    async with running_app(on_cluster(settings, own_cluster, **update)) as (app, client):
        image = await ready_image(app, client)
        assert await x_cache(client, image["id"]) == "MISS"
        assert await x_cache(client, image["id"]) == "HIT"
        slot = key_slot(cache_key(image["id"]).encode())
        master = await own_cluster.master_of_slot(slot)
        assert master is not None

        answers: list[tuple[int, str | None]] = []
        stop_reading = anyio.Event()

        async def keep_reading() -> None:
            while not stop_reading.is_set():
                response = await client.get(metadata_url(image["id"]))
                answers.append((response.status_code, response.headers.get("X-Cache")))
                await anyio.sleep(0.02)

        async with anyio.create_task_group() as readers:
            readers.start_soon(keep_reading)
            await master.kill()

            async def degraded() -> dict[str, Any] | None:
                report = await health(client)
                return report if report["status"] == "degraded" else None

            report = await wait_until(degraded, what="/health to report the dead master", within=5.0)
            assert (report["cache"], report["rate_limiter"]) == ("disconnected", "memory-fallback")
            assert (report["database"], report["storage"]) == ("connected", "connected")
            during = await upload(client, make_jpeg())
            assert during.status_code == 201, during.text  # the limiter answers from this process's memory
            assert int(during.headers["RateLimit-Remaining"]) >= 0

            promoted = await wait_for_new_master(own_cluster, slot, master)

            async def cache_used_again() -> bool:
                return await x_cache(client, image["id"]) == "HIT"  # the replica's copy of the entry

            await wait_until(cache_used_again, what="X-Cache: HIT after the failover", within=RECOVERY_DEADLINE_SECONDS)
            stop_reading.set()

        statuses = {status for status, _ in answers}
        assert statuses == {200}, f"answers while {master.address} was down: {answers}"
        assert (200, "MISS") in answers, "served from the database while the master was down"
        assert promoted.port != master.port

        # New entries are written to the cluster again, by the same process.
        fresh = await ready_image(app, client)
        assert await x_cache(client, fresh["id"]) == "MISS"
        assert await x_cache(client, fresh["id"]) == "HIT"
        report = await health(client)
        assert (report["status"], report["cache"], report["rate_limiter"]) == ("healthy", "connected", "redis")
        after = await upload(client, make_jpeg())
        assert after.status_code == 201
    view = cluster_client(own_cluster)
    try:
        assert await view.exists(cache_key(fresh["id"])) == 1
        assert await view.keys("chitram:ratelimit*", target_nodes=RedisCluster.PRIMARIES)
    finally:
        await view.aclose()


async def wait_for_new_master(cluster: LocalRedisCluster, slot: int, dead: ClusterNodeServer) -> ClusterNodeServer:
    """Poll CLUSTER NODES until another node serves `slot` and every live node says the cluster is ok."""

    async def promoted() -> ClusterNodeServer | None:
        owner = await cluster.master_of_slot(slot)
        if owner is None or owner.port == dead.port:
            return None
        return owner if await cluster.is_healthy() else None

    return await wait_until(promoted, what=f"a replica to take over slot {slot}", within=FAILOVER_DEADLINE_SECONDS)


async def test_a_fill_racing_an_invalidation_is_refused_on_the_cluster(cluster: LocalRedisCluster) -> None:
    """The fill script reads the entry's stamp beside it (hash tag): same slot on a cluster, same rule."""
    reader_handle, deleter_handle = RedisHandle(cluster.url), RedisHandle(cluster.url)
    try:
        reader = MetadataCache(reader_handle, ttl_seconds=60)
        deleter = MetadataCache(deleter_handle, ttl_seconds=60)
        images = [uuid.uuid4() for _ in range(12)]  # several slots, so several masters
        misses = [await reader.lookup(image_id) for image_id in images]
        assert all(miss.stamp == b"" for miss in misses)
        for image_id in images[::2]:
            await deleter.invalidate(image_id)

        pairs = zip(images, misses, strict=True)
        filled = [await reader.fill(image_id, METADATA, miss.stamp or b"") for image_id, miss in pairs]

        assert filled == [False, True] * 6
        for image_id, stored in zip(images, filled, strict=True):
            expected = (Metadata.of(METADATA), "HIT") if stored else (None, "MISS")
            assert await reader.get(image_id) == expected
        masters = {await cluster.master_of_slot(key_slot(reader.key(image_id).encode())) for image_id in images}
        assert len(masters) > 1
    finally:
        await reader_handle.close()
        await deleter_handle.close()


async def test_a_hung_master_costs_one_call_at_most_half_a_second_and_then_none(
    own_cluster: LocalRedisCluster,
) -> None:
    """A node that accepts but never answers: no retries, no waiting out the failover in a request."""
    handle = RedisHandle(own_cluster.url, cooldown_seconds=60)  # no probe during the test
    try:
        cache = MetadataCache(handle, ttl_seconds=60)
        image_id = uuid.uuid4()
        await cache.set(image_id, METADATA)
        assert await cache.get(image_id) == (Metadata.of(METADATA), "HIT")
        master = await own_cluster.master_of_slot(key_slot(cache.key(image_id).encode()))
        assert master is not None

        master.pause()
        started = time.monotonic()
        assert await cache.get(image_id) == (None, "MISS")
        assert time.monotonic() - started < MAX_DEGRADED_CALL_SECONDS
        started = time.monotonic()
        for _ in range(10):
            assert await cache.get(image_id) == (None, "MISS")  # skipped by the breaker
        assert time.monotonic() - started < MAX_DEGRADED_CALL_SECONDS
        assert handle.state() == "disconnected"
    finally:
        await handle.close()


async def subscribed_node(cluster: LocalRedisCluster, channel: str) -> ClusterNodeServer | None:
    """The running node that holds a subscriber of `channel`, if one does."""
    for node in cluster.nodes:
        if not node.running:
            continue
        client: Redis = node.client()
        try:
            counts = dict(await client.pubsub_numsub(channel))
        finally:
            await client.aclose()
        if counts.get(channel.encode(), 0):
            return node
    return None


async def test_the_near_copy_resubscribes_through_another_node_when_its_node_dies(
    own_cluster: LocalRedisCluster,
) -> None:
    image_id = uuid.uuid4()
    async with (
        process_cache(own_cluster.url) as listening,
        process_cache(own_cluster.url, near_ttl_seconds=0) as deleting,
    ):
        await listening.set(image_id, METADATA)
        assert await listening.get(image_id) == (Metadata.of(METADATA), "HIT")
        assert listening.near.get(str(image_id)) is not None
        node = await subscribed_node(own_cluster, listening.channel)
        assert node is not None

        await node.kill()
        await wait_until(
            lambda: holds(not listening.near.live),
            what="the near copy to be given up",
            within=DEAD_AFTER_SECONDS + ANNOUNCEMENT_DEADLINE_SECONDS,
        )
        assert listening.near.get(str(image_id)) is None
        await wait_until(lambda: holds(listening.near.live), what="a subscription through another node", within=10.0)
        elsewhere = await subscribed_node(own_cluster, listening.channel)
        assert elsewhere is not None
        assert elsewhere.port != node.port

        # Announcements reach the new subscription, whichever node the deleting process publishes through.
        async def kept_near_again() -> bool:
            await listening.set(image_id, METADATA)  # skipped while the breaker waits out a failure
            await listening.get(image_id)
            return listening.near.get(str(image_id)) is not None

        await wait_until(kept_near_again, what="the entry to be kept near again", within=RECOVERY_DEADLINE_SECONDS)

        async def announced() -> bool:
            await deleting.invalidate(image_id)  # retried until the cluster takes it
            return deleting.pending_invalidations == 0

        await wait_until(announced, what="the invalidation to be sent", within=FAILOVER_DEADLINE_SECONDS)

        async def dropped() -> bool:
            return listening.near.get(str(image_id)) is None

        await wait_until(dropped, what="the announcement to arrive", within=ANNOUNCEMENT_DEADLINE_SECONDS)
