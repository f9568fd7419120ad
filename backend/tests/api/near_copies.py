"""Helpers for tests of answers served from a process's near copy (ADR 0011)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app.services.cache import MetadataCache
from app.services.redis_client import RedisHandle
from tests.api.waiting import wait_until


def comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers (order aside) and body: what must not differ between two answers.

    Every answer has a request id of its own, so only its presence is compared.
    """
    headers = [(name, "<id>" if name == "x-request-id" else value) for name, value in response.headers.multi_items()]
    return response.status_code, sorted(headers), response.content


async def warm_near_copy(app: FastAPI, client: httpx.AsyncClient, url: str, image_id: str) -> None:
    """GET `url` until this process keeps the image's metadata near (database, then Redis, then near)."""

    async def held() -> bool:
        assert (await client.get(url)).status_code == 200
        return app.state.cache.near.get(image_id) is not None

    await wait_until(held, what="the metadata to be kept near")


class RoutedPaths:
    """Records the paths that reach FastAPI's router (installed by `count_routed`)."""

    def __init__(self) -> None:
        self.paths: list[str] = []


def count_routed(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> RoutedPaths:
    """Count requests that get past the middlewares to routing, by wrapping the router's entry."""
    routed = RoutedPaths()
    inner: ASGIApp = app.router.middleware_stack

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            routed.paths.append(scope["path"])
        await inner(scope, receive, send)

    monkeypatch.setattr(app.router, "middleware_stack", counting)
    return routed


@asynccontextmanager
async def process_cache(url: str, *, near_ttl_seconds: float = 30.0) -> AsyncIterator[MetadataCache]:
    """One process's cache with its own Redis handle and listener, as the app's lifespan builds it."""
    handle = RedisHandle(url, cooldown_seconds=0.2)
    cache = MetadataCache(handle, ttl_seconds=60, near_ttl_seconds=near_ttl_seconds)
    listener = asyncio.create_task(cache.listen_for_invalidations())
    try:
        if near_ttl_seconds > 0:
            await wait_until(lambda: holds(cache.near.live), what="the invalidation channel to be subscribed")
        yield cache
    finally:
        cache.stop_listening()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await handle.close()


async def holds(value: bool) -> bool:
    """`value`, as the awaitable `wait_until` asks for."""
    return value
