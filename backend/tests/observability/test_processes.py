"""Metrics, logs and request ids of real server processes: uvicorn workers (WEB_CONCURRENCY) and the worker tier.

Each process keeps its figures in a file of the host's metrics directory; any process answering a scrape
sums them all, so every scrape gives the same total whichever process answers it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.conftest import _truncate_tables, corpus_bytes
from tests.factories import make_distinct_jpeg
from tests.integration.test_worker_tier import START_TIMEOUT_SECONDS, queued_settings, wait_ready, worker_pids
from tests.observability.scrapes import METRICS_TOKEN, SCRAPER, scrape_sync, total
from tests.servers import app_server_env, app_servers, free_port, running_app_server, settings_env, worker_tier

REQUESTS = 40
PASSWORD = "correct horse battery staple"


async def upload_jpeg(base_url: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        response = await client.post("/api/v1/images/upload", files={"file": ("p.jpg", make_distinct_jpeg())})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
def two_worker_server(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """`python -m app` with WEB_CONCURRENCY=2, JSON logs with a line per request; its URL, log and metrics folder."""
    metrics_dir = tmp_path / "metrics"
    env = app_server_env(
        **settings_env(settings),
        HOST="127.0.0.1",
        PORT=str(free_port()),
        WEB_CONCURRENCY="2",
        LOG_FORMAT="json",
        ACCESS_LOG="true",
        METRICS_TOKEN=METRICS_TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    log = tmp_path / "server.log"
    try:
        with running_app_server(env, log, start_timeout=START_TIMEOUT_SECONDS) as base_url:
            yield base_url, log, metrics_dir
    finally:
        asyncio.run(_truncate_tables(settings.database_url))


def test_every_scrape_sums_all_uvicorn_workers(two_worker_server: tuple[str, Path, Path]) -> None:
    base_url, log, metrics_dir = two_worker_server
    for _ in range(REQUESTS):
        # A new connection each time: the kernel spreads them over both processes' accepts.
        assert httpx.get(f"{base_url}/livez").status_code == 200
    time.sleep(1.5)  # each process hands its figures to the shared files once a second
    totals = [
        total(scrape_sync(base_url, SCRAPER), "chitram_http_requests_total", route="/livez", status="200")
        for _ in range(6)
    ]
    assert totals == [REQUESTS] * 6
    # Both processes answered some of them (each request's log line names its process).
    answered_by = {
        line["process"] for line in map(json.loads, log.read_text().splitlines()) if line.get("route") == "/livez"
    }
    assert len(answered_by) == 2, answered_by
    assert len(list(metrics_dir.glob("counter_*.db"))) >= 2


def test_json_log_lines_carry_the_request_id_and_never_a_secret(two_worker_server: tuple[str, Path, Path]) -> None:
    base_url, log, _metrics = two_worker_server
    secrets: list[str] = [PASSWORD]
    with httpx.Client(base_url=base_url, timeout=30) as client:
        registered = client.post("/api/v1/auth/register", json={"email": "ops@example.com", "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        token = registered.json()["access_token"]
        secrets.append(token)
        key = client.post(
            "/api/v1/users/me/api-keys",
            json={"name": "ci", "scopes": ["images:read", "images:upload", "images:delete"]},
            headers={"Authorization": f"Bearer {token}"},
        ).json()["key"]
        secrets.append(key)
        files = {"file": ("photo.jpg", make_distinct_jpeg(), "image/jpeg")}
        assert client.post("/api/v1/images/upload", files=files, headers={"X-API-Key": key}).status_code == 201
        anonymous = client.post("/api/v1/images/upload", files={"file": ("f.jpg", corpus_bytes("flower.jpg"))})
        delete_token = anonymous.json()["delete_token"]
        secrets.append(delete_token)
        image_id = anonymous.json()["id"]
        deleted = client.delete(f"/api/v1/images/{image_id}", headers={"X-Delete-Token": delete_token})
        assert deleted.status_code == 204
        missing = client.get(f"/api/v1/images/{image_id}")
        assert missing.status_code == 404
        request_id = missing.headers["X-Request-ID"]
        assert missing.json()["detail"]["details"]["request_id"] == request_id
        # From a trusted proxy (FORWARDED_ALLOW_IPS is loopback here) the proxy's id is kept.
        relayed = client.get("/livez", headers={"X-Request-ID": "caddy-7f3a"})
        assert relayed.headers["X-Request-ID"] == "caddy-7f3a"
        forged = client.get("/livez", headers={"X-Request-ID": "two words"})  # could split a log line's fields
        assert forged.headers["X-Request-ID"] != "two words"
        client.post("/api/v1/auth/login", json={"email": "ops@example.com", "password": PASSWORD})
    time.sleep(0.5)

    text = log.read_text()
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"time", "level", "message", "request_id"} <= line.keys() for line in lines)
    about_404 = [line for line in lines if line["request_id"] == request_id]
    assert len(about_404) == 1
    assert (
        about_404[0]
        | {
            "route": "/api/v1/images/{image_id}",
            "status": 404,
            "method": "GET",
            "client": "127.0.0.1",
        }
        == about_404[0]
    )
    assert about_404[0]["duration_ms"] > 0
    assert image_id not in about_404[0]["message"]  # routes, never paths with ids
    assert any(line["request_id"] == "caddy-7f3a" for line in lines)
    for secret in secrets:
        assert secret not in text


async def test_the_worker_tier_serves_its_processes_figures(settings: Settings, tmp_path: Path) -> None:
    queued = queued_settings(settings)
    port = free_port()
    worker_metrics = f"http://127.0.0.1:{port}"
    try:
        await _serve_and_scrape_the_tier(queued, tmp_path, port, worker_metrics)
    finally:
        await _truncate_tables(settings.database_url)


async def _serve_and_scrape_the_tier(queued: Settings, tmp_path: Path, port: int, worker_metrics: str) -> None:
    with (
        app_servers(queued, tmp_path, 1, start_timeout=START_TIMEOUT_SECONDS) as [(api, _log)],
        worker_tier(queued, tmp_path / "worker.log", processes=2, metrics_port=port) as supervisor,
    ):
        image_ids = [await upload_jpeg(api) for _ in range(4)]
        await wait_ready(api, image_ids, within=60, what="thumbnails from the worker tier")
        await asyncio.sleep(0.2)
        figures = await asyncio.to_thread(scrape_sync, worker_metrics)  # no token set: loopback may scrape
        done = total(figures, "chitram_jobs_total", kind="thumbnail", outcome="done")
        assert done >= 4
        assert total(figures, "chitram_job_wait_seconds_count", kind="thumbnail") >= 4
        assert total(figures, "chitram_image_stage_duration_seconds_count", stage="thumbnail") >= 4
        assert total(figures, "chitram_storage_bytes_written_total", kind="thumbnail") > 0
        assert total(figures, "chitram_db_pool_capacity") > 0
        # A worker killed and started again: what it counted stays counted.
        os.kill(min(worker_pids(supervisor)), signal.SIGKILL)
        await asyncio.sleep(2.5)
        more = [await upload_jpeg(api) for _ in range(2)]
        await wait_ready(api, more, within=60, what="thumbnails after a worker was killed")
        after = await asyncio.to_thread(scrape_sync, worker_metrics)
        assert total(after, "chitram_jobs_total", kind="thumbnail", outcome="done") >= done + 2
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{worker_metrics}/other")).status_code == 404
        # The API reports the queue it shares with the tier.
        api_figures = await asyncio.to_thread(scrape_sync, api)
        assert total(api_figures, "chitram_job_queue_depth") == 0
        assert total(api_figures, "chitram_thumbnails_pending") == 0
