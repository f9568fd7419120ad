"""Readiness checks of the service's dependencies, each bounded in time."""

from __future__ import annotations

import logging

import anyio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.schemas.health import ComponentState
from app.services.storage import StorageBackend

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 3.0


async def database_state(engine: AsyncEngine) -> ComponentState:
    """`connected` when `SELECT 1` answers within the time limit."""
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as error:
        logger.warning("health: database unreachable: %s", type(error).__name__)
        return "disconnected"
    return "connected"


async def storage_state(storage: StorageBackend) -> ComponentState:
    """`connected` when the storage backend answers within the time limit."""
    with anyio.move_on_after(CHECK_TIMEOUT_SECONDS):
        if await storage.health_check():
            return "connected"
    logger.warning("health: storage backend %s unreachable", storage.name)
    return "disconnected"
