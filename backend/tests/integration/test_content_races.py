"""Shared originals under real concurrency: two API processes, one PostgreSQL, one S3 endpoint.

Identical uploads race each other, and uploads race the delete of the last image with the same
content, over HTTP against two uvicorn processes. Afterwards every row's bytes must be there and
whole, and no object may be left that no row names (ADR 0014).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from app.models import Image
from tests.api.helpers import bucket_keys
from tests.conftest import _truncate_tables
from tests.factories import UPLOAD_URL, make_jpeg
from tests.servers import app_servers

ROUNDS = 16
COPIES_PER_ROUND = 6


@pytest.fixture
async def servers(settings: Settings, tmp_path: Path) -> AsyncIterator[list[str]]:
    """Two `python -m app` processes on the test's database, bucket and Redis; the tables emptied after."""
    try:
        with app_servers(settings, tmp_path, 2) as started:
            yield [url for url, _ in started]
    finally:
        await _truncate_tables(settings.database_url)


def with_comment(jpeg: bytes, text: str) -> bytes:
    """Other bytes, the same picture: stripping makes every such copy one content."""
    payload = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


async def upload(client: httpx.AsyncClient, base_url: str, body: bytes) -> dict[str, Any]:
    response = await client.post(f"{base_url}{UPLOAD_URL}", files={"file": ("race.jpg", body, "image/jpeg")})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def delete(client: httpx.AsyncClient, base_url: str, created: dict[str, Any]) -> None:
    response = await client.delete(
        f"{base_url}/api/v1/images/{created['id']}", headers={"X-Delete-Token": created["delete_token"]}
    )
    assert response.status_code == 204, response.text


async def test_identical_uploads_racing_on_two_processes_store_one_original(
    settings: Settings, servers: list[str]
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for round_number in range(ROUNDS):
            picture = make_jpeg(96, 64, color=(round_number * 20 % 256, 90, 200))
            copies = [with_comment(picture, f"copy {n}") for n in range(COPIES_PER_ROUND)]
            created = await asyncio.gather(*(upload(client, servers[n % 2], body) for n, body in enumerate(copies)))
            assert len({image["id"] for image in created}) == COPIES_PER_ROUND
            assert {image["checksum"] for image in created} == {hashlib.sha256(picture).hexdigest()}
        await assert_rows_and_objects_agree(client, servers[0], settings)


async def test_uploads_racing_the_delete_of_the_last_copy_never_lose_bytes_nor_leave_orphans(
    settings: Settings, servers: list[str]
) -> None:
    shuffle = random.Random(20261204)
    async with httpx.AsyncClient(timeout=30) as client:
        for round_number in range(ROUNDS * 2):
            picture = make_jpeg(80, 80, color=(30, round_number * 10 % 256, 160))
            last = await upload(client, servers[round_number % 2], picture)
            # Delete the only copy while new copies arrive on both processes, in a shuffled order.
            racers = [delete(client, servers[(round_number + 1) % 2], last)]
            racers += [upload(client, servers[n % 2], with_comment(picture, f"racer {n}")) for n in range(3)]
            shuffle.shuffle(racers)
            outcomes = await asyncio.gather(*racers)
            survivors = [created for created in outcomes if created is not None]
            assert len(survivors) == 3
            for created in survivors:  # each new copy has its bytes, whoever won the race
                download = await client.get(f"{servers[round_number % 2]}{created['url']}")
                assert download.status_code == 200, download.text
                assert hashlib.sha256(download.content).hexdigest() == created["checksum"]
            if round_number % 2:
                # Half the rounds end with the content gone again: its bytes must go too.
                await asyncio.gather(*(delete(client, servers[n % 2], c) for n, c in enumerate(survivors)))
        await assert_rows_and_objects_agree(client, servers[0], settings)


async def assert_rows_and_objects_agree(client: httpx.AsyncClient, base_url: str, settings: Settings) -> None:
    """Every row's original (and ready thumbnail) is in the bucket, whole; in the end nothing else is.

    "In the end": a thumbnail job of a deleted image may still be writing, then collecting, its file.
    """
    for _ in range(300):
        rows = await _rows(settings)
        named = set(itertools.chain.from_iterable((row.storage_key, row.thumbnail_key) for row in rows)) - {None}
        keys = bucket_keys(settings)
        if named <= keys and (keys == named or not any(row.thumbnail_status == "pending" for row in rows)):
            break
        await asyncio.sleep(0.1)
    for _ in range(100):
        if bucket_keys(settings) == named:
            break
        await asyncio.sleep(0.1)
    assert bucket_keys(settings) == named
    for row in rows:
        download = await client.get(f"{base_url}/api/v1/images/{row.id}/file")
        assert download.status_code == 200, download.text
        assert hashlib.sha256(download.content).hexdigest() == row.checksum


async def _rows(settings: Settings) -> list[Any]:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(select(Image))).all())
    finally:
        await engine.dispose()
