"""Variants made once under a burst of first requests: two API processes, one PostgreSQL, one store.

Fifty requests for a variant nobody has made yet are released at once, half at each process, over
real uvicorn servers sharing the database, Redis and the storage (a local folder, or S3). Single
flight (ADR 0015) must hold on both of its levels, one task per variant in a process and the
`variants` row as the claim across processes: every request gets the same bytes, exactly one render
is logged by the two processes together, and one object and one ready row are left for it.

Renders are counted from the processes' own output: `python -m app` logs INFO, and every render
logs one `rendered variant <name> of <checksum>` line from `app.services.variants`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from app.models import Variant, VariantStatus
from tests.api.helpers import bucket_keys
from tests.api.waiting import wait_until
from tests.conftest import _truncate_tables
from tests.factories import UPLOAD_URL
from tests.servers import app_servers

REQUESTS = 50
PROCESSES = 2
WIDTH = 600
# The original: big enough that decoding, resizing and encoding take a while (about 0.1 s idle, more on
# a busy machine), so the burst is in flight, on both processes, while the first render runs.
PHOTO_SIZE = (3000, 2000)
# Generous: two processes render and poll on a shared, possibly loaded, two-core machine.
REQUEST_TIMEOUT_SECONDS = 120
STARTUP_TIMEOUT_SECONDS = 180
# The app's text log line (LOG_FORMAT=text): "... INFO [process] app.services.variants [request id]: rendered ..."
RENDER_LOG = re.compile(r" INFO \[[^]]*\] app\.services\.variants \[[^]]*\]: rendered variant (\S+) of ([0-9a-f]{64}) ")
# `format=auto`: what each client accepts, and what it must be given.
NEGOTIATED = {
    "image/avif,image/webp,image/*;q=0.8,*/*;q=0.5": "image/avif",
    "image/webp,image/*;q=0.8,*/*;q=0.5": "image/webp",
}


@dataclass(frozen=True)
class ApiProcess:
    """One `python -m app` server: its base URL and the file its stdout and stderr go to."""

    url: str
    log: Path

    def renders_of(self, checksum: str) -> list[str]:
        """The names of the variants of `checksum` this process rendered, one per render."""
        names = []
        for line in self.log.read_text().splitlines():
            rendered = RENDER_LOG.search(line)
            if rendered is not None and rendered.group(2) == checksum:
                names.append(rendered.group(1))
        return names


@pytest.fixture(params=["local", "s3"])
def shared_settings(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    """The test's settings with the storage both processes share: a local folder, or the test's bucket."""
    if request.param == "local":
        return settings.model_copy(update={"storage_backend": "local", "local_storage_path": tmp_path / "storage"})
    return settings


@pytest.fixture
async def processes(shared_settings: Settings, tmp_path: Path) -> AsyncIterator[list[ApiProcess]]:
    """Two API processes on the same database, Redis and storage; the tables emptied after."""
    try:
        with app_servers(shared_settings, tmp_path, PROCESSES, start_timeout=STARTUP_TIMEOUT_SECONDS) as started:
            yield [ApiProcess(url, log) for url, log in started]
    finally:
        await _truncate_tables(shared_settings.database_url)


def make_photo(seed: int) -> bytes:
    """A photo-like JPEG (smooth noise, not a flat colour) whose content no other seed gives."""
    width, height = PHOTO_SIZE
    coarse = (width // 8, height // 8)
    noise = random.Random(seed).randbytes(coarse[0] * coarse[1] * 3)
    picture = Image.frombytes("RGB", coarse, noise).resize(PHOTO_SIZE, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


async def upload(client: httpx.AsyncClient, process: ApiProcess, body: bytes) -> dict[str, Any]:
    response = await client.post(f"{process.url}{UPLOAD_URL}", files={"file": ("photo.jpg", body, "image/jpeg")})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def level_the_processes(client: httpx.AsyncClient, processes: list[ApiProcess], image_id: str) -> None:
    """Let the upload's thumbnail job finish, then read the metadata through every process: the
    burst then finds warm pools and cached metadata everywhere, and the processes race for the claim
    on equal terms (else the one that took the upload wins it every time)."""

    async def thumbnail_settled() -> bool:
        response = await client.get(f"{processes[0].url}/api/v1/images/{image_id}")
        assert response.status_code == 200, response.text
        return bool(response.json()["thumbnail_status"] != "pending")

    await wait_until(thumbnail_settled, what="the thumbnail of the upload", within=REQUEST_TIMEOUT_SECONDS)
    for process in processes:
        response = await client.get(f"{process.url}/api/v1/images/{image_id}")
        assert response.status_code == 200, response.text


async def first_requests_at_once(
    client: httpx.AsyncClient, processes: list[ApiProcess], path: str, accepts: list[str]
) -> list[tuple[str, httpx.Response]]:
    """REQUESTS GETs of `path`, alternating between the processes and (per process) between `accepts`,
    all released together; each answer with the Accept header it was asked with."""
    barrier = asyncio.Barrier(REQUESTS)

    async def one(number: int) -> tuple[str, httpx.Response]:
        process = processes[number % len(processes)]
        accept = accepts[number // len(processes) % len(accepts)]
        await barrier.wait()
        return accept, await client.get(f"{process.url}{path}", headers={"Accept": accept})

    return await asyncio.gather(*(one(number) for number in range(REQUESTS)))


def stored_variant_keys(settings: Settings, checksum: str) -> set[str]:
    """Every object under the variants prefix of `checksum` (a local write's leftover temporary file too)."""
    prefix = f"variants/{checksum[:2]}/{checksum}/"
    if settings.storage_backend == "local":
        root = settings.local_storage_path
        return {path.relative_to(root).as_posix() for path in (root / prefix).rglob("*") if path.is_file()}
    return {key for key in bucket_keys(settings) if key.startswith(prefix)}


async def variant_rows(settings: Settings, checksum: str) -> list[Any]:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            query = select(Variant).where(Variant.source_checksum == checksum)
            return list((await connection.execute(query)).all())
    finally:
        await engine.dispose()


def assert_one_answer(answers: list[httpx.Response], content_type: str) -> bytes:
    """Every answer is a 200 with the same bytes and ETag: a `content_type` picture WIDTH wide."""
    assert [answer.status_code for answer in answers] == [200] * len(answers), [
        answer.text for answer in answers if answer.status_code != 200
    ]
    assert len({answer.content for answer in answers}) == 1
    assert {answer.headers["etag"] for answer in answers} == {f'"{hashlib.sha256(answers[0].content).hexdigest()}"'}
    assert {answer.headers["content-type"] for answer in answers} == {content_type}
    with Image.open(io.BytesIO(answers[0].content)) as picture:
        assert picture.get_format_mimetype() == content_type
        assert picture.size == (WIDTH, WIDTH * PHOTO_SIZE[1] // PHOTO_SIZE[0])
    return answers[0].content


async def assert_stored_once(
    settings: Settings, processes: list[ApiProcess], checksum: str, served: list[bytes]
) -> None:
    """One render per variant across the processes, and one ready row and one object for each."""
    renders = Counter(name for process in processes for name in process.renders_of(checksum))
    assert sum(renders.values()) == len(served), renders
    assert set(renders.values()) == {1}, renders
    rows = await variant_rows(settings, checksum)
    assert {row.name for row in rows} == set(renders)
    assert {row.status for row in rows} == {VariantStatus.READY}
    assert {row.checksum for row in rows} == {hashlib.sha256(body).hexdigest() for body in served}
    assert stored_variant_keys(settings, checksum) == {row.storage_key for row in rows}


async def test_first_requests_racing_on_two_processes_render_each_variant_once(
    shared_settings: Settings, processes: list[ApiProcess]
) -> None:
    """Both bursts run on one pair of processes: starting a pair costs far more than a burst."""
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS, limits=limits) as client:
        await one_format_is_rendered_once(client, shared_settings, processes)
        await auto_is_rendered_once_per_negotiated_format(client, shared_settings, processes)


async def one_format_is_rendered_once(
    client: httpx.AsyncClient, settings: Settings, processes: list[ApiProcess]
) -> None:
    created = await upload(client, processes[0], make_photo(seed=1))
    await level_the_processes(client, processes, created["id"])
    path = f"/api/v1/images/{created['id']}/file?w={WIDTH}&format=webp"
    answers = await first_requests_at_once(client, processes, path, ["image/webp,*/*"])
    served = assert_one_answer([answer for _, answer in answers], "image/webp")
    await assert_stored_once(settings, processes, created["checksum"], [served])


async def auto_is_rendered_once_per_negotiated_format(
    client: httpx.AsyncClient, settings: Settings, processes: list[ApiProcess]
) -> None:
    created = await upload(client, processes[0], make_photo(seed=2))
    await level_the_processes(client, processes, created["id"])
    path = f"/api/v1/images/{created['id']}/file?w={WIDTH}&format=auto"
    answers = await first_requests_at_once(client, processes, path, list(NEGOTIATED))
    served = []
    for accept, content_type in NEGOTIATED.items():
        group = [answer for asked, answer in answers if asked == accept]
        assert group
        assert {answer.headers.get("vary") for answer in group} == {"Accept"}
        served.append(assert_one_answer(group, content_type))
    await assert_stored_once(settings, processes, created["checksum"], served)
