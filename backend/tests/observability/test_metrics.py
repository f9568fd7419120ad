"""`/metrics` on one process: who may scrape it, and that what users do moves the figures an operator reads.

Each test scrapes before and after and compares (the figures of one test process are shared by all
its apps, as a process's are); the scrape is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from minio import Minio
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

from app.config import Settings
from app.services.concurrency import UploadSlots
from tests.api.apps import client_of, running_app, without_workers
from tests.api.waiting import wait_for_thumbnail
from tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY, corpus_bytes
from tests.factories import make_distinct_jpeg, make_jpeg, upload, upload_ok
from tests.observability.scrapes import METRICS_TOKEN, SCRAPER, label_values, scrape, total

UPLOAD_ROUTE = "/api/v1/images/upload"
METADATA_ROUTE = "/api/v1/images/{image_id}"
FILE_ROUTE = "/api/v1/images/{image_id}/file"


@pytest.fixture
def scraped_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"metrics_token": METRICS_TOKEN})


async def test_metrics_answer_only_a_bearer_of_the_token(scraped_settings: Settings) -> None:
    async with running_app(scraped_settings) as (_app, client):
        unknown = await client.get("/no-such-page", headers={"Accept": "application/json"})
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN}):
            refused = await client.get("/metrics", headers={**headers, "Accept": "application/json"})
            assert refused.status_code == 404
            assert refused.json()["detail"]["code"] == unknown.json()["detail"]["code"]  # nothing to tell it apart
        samples = await scrape(client)
    assert total(samples, "chitram_build_info", version=__import__("importlib.metadata").metadata.version("chitram"))
    assert total(samples, "chitram_db_pool_capacity") >= scraped_settings.db_pool_size


async def test_without_a_token_only_loopback_and_private_addresses_may_scrape(settings: Settings) -> None:
    async with running_app(settings) as (app, public_client):
        assert (await public_client.get("/metrics")).status_code == 404  # 203.0.113.7, the internet
        for address in ("127.0.0.1", "10.1.2.3", "172.30.90.5", "192.168.0.9", "::1"):
            async with client_of(app, (address, 40000)) as client:
                assert (await client.get("/metrics")).status_code == 200, address
        # Behind a trusted proxy the client is the one it names: the internet, refused.
        proxied = settings.model_copy(update={"forwarded_allow_ips": "10.0.0.2"})
    async with running_app(proxied) as (app, _client), client_of(app, ("10.0.0.2", 40000)) as via_proxy:
        relayed = await via_proxy.get("/metrics", headers={"X-Forwarded-For": "198.51.100.20"})
        assert relayed.status_code == 404


async def test_metrics_can_be_turned_off(scraped_settings: Settings) -> None:
    off = scraped_settings.model_copy(update={"metrics_enabled": False})
    async with running_app(off) as (_app, client):
        assert (await client.get("/metrics", headers=SCRAPER)).status_code == 404


async def test_uploads_reads_and_refusals_move_the_figures(scraped_settings: Settings) -> None:
    async with running_app(scraped_settings) as (_app, client):
        before = await scrape(client)
        body = make_distinct_jpeg()
        created = await upload_ok(client, body)
        duplicate = await upload_ok(client, body)
        assert duplicate["checksum"] == created["checksum"]
        refused = await upload(client, b"not an image at all", "notes.txt")
        assert refused.status_code == 400, refused.text
        code = refused.json()["detail"]["code"]
        await wait_for_thumbnail(client, created["id"])
        for _ in range(3):
            assert (await client.get(f"/api/v1/images/{created['id']}")).status_code == 200
        assert (await client.get(created["url"])).content == body
        variant = await client.get(created["url"], params={"w": 150, "format": "webp"})
        assert variant.headers["content-type"] == "image/webp"
        assert (await client.get(f"/api/v1/images/{uuid.uuid4()}")).status_code == 404
        after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("chitram_http_requests_total", method="POST", route=UPLOAD_ROUTE, status="201") == 2
    assert moved("chitram_http_requests_total", method="POST", route=UPLOAD_ROUTE, status="400") == 1
    assert moved("chitram_http_requests_total", method="GET", route=METADATA_ROUTE, status="404") == 1
    assert moved("chitram_http_requests_total", method="GET", route=FILE_ROUTE, status="200") == 2
    assert moved("chitram_http_request_duration_seconds_count", method="POST", route=UPLOAD_ROUTE) == 3
    assert moved("chitram_http_request_duration_seconds_sum", method="POST", route=UPLOAD_ROUTE) > 0
    assert moved("chitram_uploads_total", outcome="stored") == 1
    assert moved("chitram_uploads_total", outcome="deduplicated") == 1
    assert moved("chitram_uploads_total", outcome=code) == 1
    assert moved("chitram_upload_size_bytes_count", format="jpeg") == 2
    assert moved("chitram_upload_size_bytes_sum", format="jpeg") == 2 * created["file_size"]
    # Stored once, however often uploaded; the thumbnail too.
    assert moved("chitram_storage_bytes_written_total", kind="original") == created["file_size"]
    assert moved("chitram_storage_bytes_written_total", kind="thumbnail") > 0
    assert moved("chitram_storage_bytes_written_total", kind="variant") == len(variant.content)
    assert moved("chitram_storage_operation_duration_seconds_count", backend="minio", operation="put") >= 2
    assert moved("chitram_storage_errors_total") == 0
    for stage in ("validate", "strip", "store", "thumbnail", "variant"):
        assert moved("chitram_image_stage_duration_seconds_count", stage=stage) >= 1, stage
    assert moved("chitram_jobs_total", kind="thumbnail", outcome="done") >= 1
    # The first read of a ready image misses Redis and fills it; the ones after are hits.
    assert moved("chitram_cache_lookups_total", layer="redis", result="miss") >= 1
    assert moved("chitram_cache_lookups_total", result="hit") >= 2
    assert total(after, "chitram_http_requests_in_flight") >= 0


async def test_rate_limit_refusals_and_upload_slot_timeouts_are_counted(scraped_settings: Settings) -> None:
    limited = scraped_settings.model_copy(
        update={"rate_limit_per_minute": 1, "upload_concurrency_limit": 1, "upload_concurrency_timeout": 0.2}
    )
    async with running_app(without_workers(limited)) as (app, client):
        before = await scrape(client)
        slots: UploadSlots = app.state.upload_slots
        async with slots.acquire():  # every slot busy: the next upload waits, then is turned away
            busy = await upload(client, make_jpeg())
        assert busy.status_code == 503
        assert (await upload(client, make_jpeg())).status_code == 429  # the minute's one upload was the 503's
        after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("chitram_upload_slot_waits_total") == 1
    assert moved("chitram_upload_slot_timeouts_total") == 1
    assert moved("chitram_uploads_total", outcome="SERVICE_UNAVAILABLE") == 1
    assert moved("chitram_rate_limit_refusals_total", limit="upload") == 1
    assert moved("chitram_uploads_total", outcome="RATE_LIMIT_EXCEEDED") == 1
    assert moved("chitram_http_requests_total", method="POST", route=UPLOAD_ROUTE, status="429") == 1


async def test_storage_failures_are_counted_and_a_missing_object_is_not(scraped_settings: Settings) -> None:
    async with running_app(without_workers(scraped_settings)) as (_app, client):
        created = await upload_ok(client)
        before = await scrape(client)
        bucket = Minio(scraped_settings.minio_endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, secure=False)
        for item in bucket.list_objects(scraped_settings.minio_bucket, recursive=True):
            bucket.remove_object(scraped_settings.minio_bucket, item.object_name or "")
        assert (await client.get(created["url"])).status_code == 404  # the object is gone: an answer
        bucket.remove_bucket(scraped_settings.minio_bucket)  # the bucket is gone: a failure
        failed = await upload(client, make_distinct_jpeg())
        assert failed.status_code == 503, failed.text
        after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("chitram_storage_errors_total", backend="minio", operation="get") == 0
    assert moved("chitram_storage_errors_total", backend="minio", operation="put") == 1
    assert moved("chitram_uploads_total", outcome="STORAGE_UNAVAILABLE") == 1


async def test_queue_depth_pending_thumbnails_and_free_disk_are_read_at_scrape_time(
    scraped_settings: Settings, tmp_path: object
) -> None:
    queued = scraped_settings.model_copy(
        update={
            "job_queue": "postgres",
            "thumbnail_workers_enabled": False,
            "storage_backend": "local",
            "local_storage_path": tmp_path,
        }
    )
    async with running_app(queued) as (_app, client):
        empty = await scrape(client)
        assert total(empty, "chitram_job_queue_depth") == 0
        assert total(empty, "chitram_job_queue_oldest_age_seconds") == 0
        for _ in range(3):
            await upload_ok(client)  # no worker runs: the jobs wait
        await asyncio.sleep(0.3)
        waiting = await scrape(client)
    assert total(waiting, "chitram_job_queue_depth") == 3
    assert total(waiting, "chitram_thumbnails_pending") == 3
    assert total(waiting, "chitram_job_queue_oldest_age_seconds") >= 0.3
    assert total(waiting, "chitram_storage_free_bytes") > 0


async def test_labels_stay_bounded_under_a_burst_of_distinct_ids(scraped_settings: Settings) -> None:
    async with running_app(without_workers(scraped_settings)) as (_app, client):
        created = await upload_ok(client, corpus_bytes("flower.jpg"))
        before = await scrape(client)
        ids = [str(uuid.uuid4()) for _ in range(1000)]
        for start in range(0, len(ids), 50):
            batch = ids[start : start + 50]
            answers = await asyncio.gather(
                *(client.get(f"/api/v1/images/{image_id}") for image_id in batch[:25]),
                *(client.get(f"/api/v1/images/{image_id}/file?w=300") for image_id in batch[25:]),
            )
            assert {answer.status_code for answer in answers} == {404}
        await client.get(f"/api/v1/images/{created['id']}/file")
        await client.request("BREW", "/api/v1/images/upload")
        await client.get("/nothing/here/" + ids[0])
        after = await scrape(client)
    text_after = "\n".join(str(labels) for _, labels, _ in after)
    assert not any(image_id in text_after for image_id in ids[::37])
    routes_before = label_values(before, "chitram_http_requests_total", "route")
    routes_after = label_values(after, "chitram_http_requests_total", "route")
    assert routes_after - routes_before <= {METADATA_ROUTE, FILE_ROUTE, UPLOAD_ROUTE, "unmatched"}
    assert label_values(after, "chitram_http_requests_total", "method") <= {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "OPTIONS",
        "OTHER",
    }
    series = [labels for name, labels, _ in after if name == "chitram_http_requests_total"]
    assert len(series) < 200


async def test_a_scraper_asking_for_openmetrics_gets_it(scraped_settings: Settings) -> None:
    async with running_app(scraped_settings) as (_app, client):
        assert (await client.get("/livez")).status_code == 200
        accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        response = await client.get("/metrics", headers={**SCRAPER, "Accept": accept})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    families = {family.name: family for family in openmetrics_families(response.text)}  # type: ignore[no-untyped-call]  # it parses
    assert response.text.endswith("# EOF\n")
    livez = [sample for sample in families["chitram_http_requests"].samples if sample.labels["route"] == "/livez"]
    assert sum(sample.value for sample in livez) >= 1
    assert "chitram_thumbnails_pending" in families  # the figures read at scrape time come along
