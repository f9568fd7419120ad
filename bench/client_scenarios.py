"""Scenarios a Python client drives (httpx): set-up calls, thumbnail latency (4) and memory under big uploads (5)."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import httpx

import images
from database import BenchDatabase
from services import RssSampler
from wrk import upload_lua

UPLOAD_PATH = "/api/v1/images/upload"
POLL_INTERVAL_SECONDS = 0.002
THUMBNAIL_DEADLINE_SECONDS = 30.0
# Only these statuses are documented for an upload that the server accepted or shed under load.
ALLOWED_UPLOAD_STATUSES = frozenset({201, 503})


class Account(NamedTuple):
    token: str  # Bearer
    user_id: str


def register(client: httpx.Client) -> Account:
    """A new account: its Bearer token, and its id (whose uploads the database can count)."""
    response = client.post(
        "/api/v1/auth/register",
        json={"email": f"bench-{uuid.uuid4().hex[:10]}@example.com", "password": "bench-password-123"},
    )
    response.raise_for_status()
    answer = response.json()
    return Account(answer["access_token"], answer["user"]["id"])


def unique_upload_lua(body: bytes, account: Account, body_path: Path) -> str:
    """wrk's Lua for uploads of `body` as a phone photo by `account`, each one made distinct (no copy)."""
    return upload_lua(
        body, account.token, body_path=body_path, filename="phone.jpg", content_type="image/jpeg", unique=True
    )


def all_new(database: BenchDatabase, name: str, account: Account) -> dict[str, int]:
    """The account's images and contents, which must be as many: no upload of the scenario was a copy."""
    counted = database.uploads_of(account.user_id)
    if counted["images"] == 0 or counted["contents"] != counted["images"]:
        raise RuntimeError(
            f"{name}: {counted['images']} uploads stored {counted['contents']} distinct contents; "
            "a unique-upload scenario must send new content every time"
        )
    return counted


def upload(
    client: httpx.Client, token: str, body: bytes, filename: str = "bench.jpg", content_type: str = "image/jpeg"
) -> dict[str, Any]:
    response = client.post(
        UPLOAD_PATH,
        files={"file": (filename, body, content_type)},
        headers={"Authorization": f"Bearer {token}"},
    )
    if response.status_code != 201:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
    image: dict[str, Any] = response.json()
    return image


def check_variants_are_new(
    client: httpx.Client, token: str, image: bytes, *, filename: str, content_type: str, count: int = 3
) -> list[str]:
    """Upload `count` ICC-stamped variants of `image`; fail unless each is stored as new content.

    What a unique-upload scenario relies on, seen from outside: distinct checksums (so the server
    deduplicated none of them), and the size of `image` (the same picture). Returns the checksums.
    """
    stored = [
        upload(client, token, images.fresh(image), filename=filename, content_type=content_type) for _ in range(count)
    ]
    checksums = [answer["checksum"] for answer in stored]
    sizes = {(answer["width"], answer["height"]) for answer in stored}
    if len(set(checksums)) != count or len(sizes) != 1:
        raise RuntimeError(f"stamped variants of {filename} are not all new content: {checksums}, sizes {sizes}")
    return checksums


def wait_for_thumbnail(client: httpx.Client, image_id: str) -> None:
    """Poll an image's metadata until its thumbnail is ready."""
    deadline = time.perf_counter() + THUMBNAIL_DEADLINE_SECONDS
    while time.perf_counter() < deadline:
        if client.get(f"/api/v1/images/{image_id}").json()["thumbnail_ready"]:
            return
        time.sleep(0.02)
    raise RuntimeError(f"the thumbnail of {image_id} was not ready within {THUMBNAIL_DEADLINE_SECONDS:g} s")


def warm_metadata_cache(client: httpx.Client, image_id: str) -> None:
    """GET until the answer comes from the cache (X-Cache: HIT); the scenario measures only hits.

    Metadata with a pending thumbnail is not cached, so this also waits for the thumbnail.
    """
    deadline = time.perf_counter() + THUMBNAIL_DEADLINE_SECONDS
    while time.perf_counter() < deadline:
        response = client.get(f"/api/v1/images/{image_id}")
        response.raise_for_status()
        if response.headers.get("x-cache") == "HIT":
            return
        time.sleep(0.05)
    raise RuntimeError(f"metadata never came from the cache: X-Cache={response.headers.get('x-cache')}")


def check_download(client: httpx.Client, path: str, expected: bytes) -> None:
    response = client.get(path)
    if response.status_code != 200 or response.content != expected:
        raise RuntimeError(f"GET {path} answered {response.status_code} with {len(response.content)} bytes")


def thumbnail_latency(client: httpx.Client, token: str, source: bytes, samples: int, server_pid: int) -> dict[str, Any]:
    """Upload `source` `samples` times, one after another; poll its metadata until `thumbnail_ready`.

    Each upload is new content (`images.fresh`): a copy of stored content shares its thumbnail at
    once and would time nothing.
    """
    after_upload, end_to_end, upload_times = [], [], []
    failures = 0
    with RssSampler(server_pid) as rss:
        for index in range(samples):
            body = images.fresh(source)
            started = time.perf_counter()
            image = upload(client, token, body, filename=f"thumb-{index}.jpg")
            uploaded = time.perf_counter()
            deadline = uploaded + THUMBNAIL_DEADLINE_SECONDS
            while True:
                metadata = client.get(f"/api/v1/images/{image['id']}").json()
                if metadata["thumbnail_ready"] or metadata["thumbnail_status"] == "failed":
                    break
                if time.perf_counter() > deadline:
                    break
                time.sleep(POLL_INTERVAL_SECONDS)
            ready = time.perf_counter()
            if not metadata["thumbnail_ready"]:
                failures += 1
                continue
            upload_times.append((uploaded - started) * 1000)
            after_upload.append((ready - uploaded) * 1000)
            end_to_end.append((ready - started) * 1000)
    if not after_upload:
        raise RuntimeError("no thumbnail became ready")
    return {
        "kind": "client",
        "samples": samples,
        "failures": failures,
        "source_bytes": len(source),
        "poll_interval_ms": POLL_INTERVAL_SECONDS * 1000,
        "median_after_upload_ms": round(statistics.median(after_upload), 1),
        "median_end_to_end_ms": round(statistics.median(end_to_end), 1),
        "median_upload_ms": round(statistics.median(upload_times), 1),
        "max_after_upload_ms": round(max(after_upload), 1),
        "rss_start_mb": rss.start_mb,
        "peak_rss_mb": rss.peak_mb,
    }


async def _concurrent_uploads(base_url: str, token: str, body: bytes, count: int) -> tuple[Counter[str], list[str]]:
    statuses: Counter[str] = Counter()
    image_ids: list[str] = []
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:

        async def one(index: int) -> None:
            try:
                response = await client.post(
                    UPLOAD_PATH,
                    # New content each: copies of one upload would skip decoding once the first is stored.
                    files={"file": (f"big-{index}.jpg", images.fresh(body), "image/jpeg")},
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.TransportError as error:
                statuses[f"transport error: {type(error).__name__}"] += 1
                return
            statuses[str(response.status_code)] += 1
            if response.status_code == 201:
                image_ids.append(response.json()["id"])

        await asyncio.gather(*(one(index) for index in range(count)))
    return statuses, image_ids


def memory_under_big_uploads(base_url: str, token: str, body: bytes, count: int, server_pid: int) -> dict[str, Any]:
    """`count` uploads at once, each new content; the server's peak RSS until answered and thumbnails made."""
    with RssSampler(server_pid) as rss, httpx.Client(base_url=base_url, timeout=30) as client:
        started = time.perf_counter()
        statuses, image_ids = asyncio.run(_concurrent_uploads(base_url, token, body, count))
        answered = time.perf_counter() - started
        # The thumbnails of what was accepted are part of the load the uploads put on the server.
        deadline = time.perf_counter() + 60
        pending = list(image_ids)
        while pending and time.perf_counter() < deadline:
            pending = [
                image_id
                for image_id in pending
                if not client.get(f"/api/v1/images/{image_id}").json()["thumbnail_ready"]
            ]
            if pending:
                time.sleep(0.05)
        thumbnails_done = time.perf_counter() - started
    unexpected = sum(
        n for status, n in statuses.items() if not (status.isdigit() and int(status) in ALLOWED_UPLOAD_STATUSES)
    )
    return {
        "kind": "client",
        "uploads": count,
        "file_bytes": len(body),
        "statuses": dict(sorted(statuses.items())),
        "unexpected": unexpected,
        "seconds_until_answered": round(answered, 2),
        "seconds_until_thumbnails_ready": round(thumbnails_done, 2),
        "thumbnails_not_ready": len(pending),
        "rss_start_mb": rss.start_mb,
        "peak_rss_mb": rss.peak_mb,
    }
