"""Bounded uploads over HTTP: past UPLOAD_CONCURRENCY_LIMIT a caller waits briefly, then gets 503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from tests.api.apps import running_app
from tests.api.waiting import wait_until
from tests.factories import UPLOAD_URL, make_jpeg, upload

SLOT_TIMEOUT_SECONDS = 0.5
BOUNDARY = "slot-test-boundary"


class HeldUpload:
    """A multipart upload whose body stops halfway until `release` is set, as from a slow client."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.bytes_sent = 0
        self.answered = anyio.Event()
        self.response: httpx.Response | None = None

    async def body(self) -> AsyncIterator[bytes]:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="slow.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        image = make_jpeg()
        for part in (head, image[: len(image) // 2]):
            self.bytes_sent += len(part)
            yield part
        await self.release.wait()
        for part in (image[len(image) // 2 :], f"\r\n--{BOUNDARY}--\r\n".encode()):
            self.bytes_sent += len(part)
            yield part

    async def send(self, client: httpx.AsyncClient) -> None:
        headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
        self.response = await client.post(UPLOAD_URL, content=self.body(), headers=headers)
        self.answered.set()


@pytest.fixture
async def one_slot(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    update = {"upload_concurrency_limit": 1, "upload_concurrency_timeout": SLOT_TIMEOUT_SECONDS}
    async with running_app(settings.model_copy(update=update)) as running:
        yield running


async def upload_concurrency(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/health")
    assert response.status_code == 200
    state: dict[str, Any] = response.json()["upload_concurrency"]
    return state


async def test_upload_past_the_limit_waits_then_gets_503_and_the_slot_comes_back(
    one_slot: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _app, client = one_slot
    held = HeldUpload()
    waiting = HeldUpload()  # never released: it must be turned away before its body is read
    async with anyio.create_task_group() as group:
        group.start_soon(held.send, client)

        async def slot_taken() -> dict[str, Any] | None:
            state = await upload_concurrency(client)
            return state if state["in_use"] == 1 and held.bytes_sent > 0 else None

        assert await wait_until(slot_taken, what="the held upload to take the slot") == {
            "limit": 1,
            "in_use": 1,
            "waiting": 0,
        }

        group.start_soon(waiting.send, client)

        async def caller_waiting() -> bool:
            return (await upload_concurrency(client))["waiting"] == 1 or waiting.response is not None

        await wait_until(caller_waiting, what="the second upload to wait for a slot")
        with anyio.fail_after(SLOT_TIMEOUT_SECONDS + 5):
            await waiting.answered.wait()
        refused = waiting.response
        assert refused is not None
        assert refused.status_code == 503, refused.text
        detail = refused.json()["detail"]
        assert detail["code"] == "SERVICE_UNAVAILABLE"
        assert detail["details"]["limit"] == 1
        assert int(refused.headers["Retry-After"]) >= 1
        assert "RateLimit-Remaining" in refused.headers  # still a response of a limited endpoint
        assert waiting.bytes_sent == 0  # refused before a byte of its body was read
        assert await upload_concurrency(client) == {"limit": 1, "in_use": 1, "waiting": 0}

        held.release.set()
    assert held.response is not None
    assert held.response.status_code == 201, held.response.text

    assert await upload_concurrency(client) == {"limit": 1, "in_use": 0, "waiting": 0}
    for _ in range(2):
        assert (await upload(client, make_jpeg())).status_code == 201


async def test_a_waiting_upload_gets_the_slot_when_it_frees_in_time(
    one_slot: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _app, client = one_slot
    held = HeldUpload()
    next_upload = HeldUpload()
    next_upload.release.set()
    async with anyio.create_task_group() as group:
        group.start_soon(held.send, client)

        async def slot_taken() -> bool:
            return (await upload_concurrency(client))["in_use"] == 1 and held.bytes_sent > 0

        await wait_until(slot_taken, what="the held upload to take the slot")
        group.start_soon(next_upload.send, client)

        async def caller_waiting() -> bool:
            return bool((await upload_concurrency(client))["waiting"] == 1)

        await wait_until(caller_waiting, what="the second upload to wait for a slot")
        held.release.set()
    assert held.response is not None
    assert next_upload.response is not None
    assert (held.response.status_code, next_upload.response.status_code) == (201, 201)
    assert await upload_concurrency(client) == {"limit": 1, "in_use": 0, "waiting": 0}


async def test_a_failed_upload_gives_its_slot_back(one_slot: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _app, client = one_slot
    for _ in range(3):
        bad = await upload(client, b"not an image", filename="notes.txt")
        assert bad.status_code == 400
    assert await upload_concurrency(client) == {"limit": 1, "in_use": 0, "waiting": 0}
    assert (await upload(client, make_jpeg())).status_code == 201
