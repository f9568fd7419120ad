"""Waiting for what happens in the background (thumbnails, Redis coming back), with a deadline.

Polling until a condition holds or a deadline passes is not a timed assertion: a fast machine
passes at once, a slow one just polls longer, and only a condition that never holds fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import Image

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.05


async def wait_until(
    probe: Callable[[], Awaitable[T | None]], *, what: str, within: float = DEFAULT_TIMEOUT_SECONDS
) -> T:
    """Call `probe` until it returns something other than None or False, and return that.

    Fails after `within` seconds with what was being waited for.
    """
    last: T | None = None
    with anyio.move_on_after(within):
        while True:
            last = await probe()
            if last is not None and last is not False:
                return last
            await anyio.sleep(POLL_INTERVAL_SECONDS)
    raise AssertionError(f"timed out after {within} s waiting for {what} (last seen: {last!r})")


async def wait_for_thumbnail(
    client: httpx.AsyncClient, image_id: str, within: float = DEFAULT_TIMEOUT_SECONDS
) -> httpx.Response:
    """Poll the metadata until the thumbnail is no longer pending; return that first settled response."""

    async def settled() -> httpx.Response | None:
        response = await client.get(f"/api/v1/images/{image_id}")
        assert response.status_code == 200, response.text
        return response if response.json()["thumbnail_status"] != "pending" else None

    return await wait_until(settled, what=f"the thumbnail of {image_id}", within=within)


async def image_row(app: FastAPI, image_id: str) -> Image:
    """The image's row as the database has it now (a fresh session, so nothing stale)."""
    sessionmaker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    async with sessionmaker() as session:
        row = await session.get(Image, uuid.UUID(image_id))
        assert row is not None, f"no row for {image_id}"
        return row


async def wait_for_row(
    app: FastAPI,
    image_id: str,
    condition: Callable[[Image], Any],
    *,
    what: str,
    within: float = DEFAULT_TIMEOUT_SECONDS,
) -> Image:
    """Poll the image's row until `condition(row)` holds; return the row."""

    async def probe() -> Image | None:
        row = await image_row(app, image_id)
        return row if condition(row) else None

    return await wait_until(probe, what=what, within=within)
