"""Extra app instances for tests that need their own settings, or several processes on one database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.services.thumbnail_jobs import ThumbnailJobs
from tests.conftest import TEST_CLIENT_ADDRESS, _truncate_tables


@asynccontextmanager
async def running_app(
    settings: Settings, *, empty_tables_on_exit: bool = True
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with its real lifespan and a client at TEST_CLIENT_ADDRESS, like the `client` fixture.

    Pass `empty_tables_on_exit=False` for an app that stops mid-test (a process that died) while
    the test goes on with the rows it left behind.
    """
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app), client_of(app) as client:
            yield app, client
    finally:
        if empty_tables_on_exit:
            await _truncate_tables(settings.database_url)


def client_of(app: FastAPI, client_address: tuple[str, int] = TEST_CLIENT_ADDRESS) -> httpx.AsyncClient:
    """An HTTP client for `app` whose peer address is `client_address` (a proxy, a user...)."""
    transport = httpx.ASGITransport(app=app, client=client_address, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def without_workers(settings: Settings) -> Settings:
    """Settings for an API process that makes no thumbnails: its uploads stay pending until a job runs."""
    return settings.model_copy(update={"thumbnail_workers_enabled": False})


async def run_thumbnail_job(app: FastAPI, image_id: str) -> None:
    """Run one image's thumbnail job to the end in this process.

    With background workers a test cannot tell when the job has settled the row; this can.
    """
    thumbnails: ThumbnailJobs = app.state.thumbnails
    await thumbnails.process(uuid.UUID(image_id))
