"""Health endpoint for load balancers and monitoring."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.schemas.health import (
    ComponentState,
    HealthRead,
    LiveRead,
    OptionalComponentState,
    ReadyRead,
    UploadConcurrency,
)
from app.services.concurrency import UploadSlots
from app.services.health import CHECK_TIMEOUT_SECONDS, database_state, storage_state
from app.services.rate_limit import RateLimiter
from app.services.read_routing import ReadRouter
from app.services.redis_client import RedisHandle

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=LiveRead)
async def livez() -> LiveRead:
    """Liveness: the process answers. Checks nothing else, so a database outage never restarts the API."""
    return LiveRead()


@router.get(
    "/readyz",
    response_model=ReadyRead,
    responses={503: {"model": ReadyRead, "description": "The database or the storage is unreachable."}},
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the database and the storage answer (Redis or the replica down is `degraded`, still ready)."""
    states = await _component_states(request)
    required_up = states.database == "connected" and states.storage == "connected"
    cache = request.app.state.redis.state()
    replica = states.database_replica
    degraded = "disconnected" in (cache, replica)
    status = "unready" if not required_up else "degraded" if degraded else "ready"
    report = ReadyRead(
        status=status,
        database=states.database,
        database_replica=replica,
        storage=states.storage,
        cache=cache,
    )
    return JSONResponse(report.model_dump(), status_code=503 if status == "unready" else 200)


@router.get(
    "/health",
    response_model=HealthRead,
    responses={503: {"model": HealthRead, "description": "The database or the storage is unreachable."}},
)
async def health(request: Request) -> JSONResponse:
    """Readiness with the service's figures: real checks of the database, its replica, the storage and Redis."""
    state = request.app.state
    states = await _component_states(request)
    required_up = states.database == "connected" and states.storage == "connected"
    cache_state = state.redis.state()
    degraded = "disconnected" in (cache_state, states.database_replica)
    status = "unhealthy" if not required_up else "degraded" if degraded else "healthy"
    slots: UploadSlots = state.upload_slots
    limiter: RateLimiter = state.rate_limiter
    report = HealthRead(
        status=status,
        version=request.app.version,
        environment=state.settings.app_env,
        database=states.database,
        database_replica=states.database_replica,
        storage=states.storage,
        cache=cache_state,
        rate_limiter=limiter.state(),
        upload_concurrency=UploadConcurrency(limit=slots.limit, in_use=slots.in_use, waiting=slots.waiting),
    )
    return JSONResponse(report.model_dump(), status_code=503 if status == "unhealthy" else 200)


@dataclass
class _Components:
    database: ComponentState = "disconnected"
    storage: ComponentState = "disconnected"
    database_replica: OptionalComponentState = "disconnected"


async def _component_states(request: Request) -> _Components:
    """The database, its replica, the storage and (to refresh its state) Redis, checked at once, each bounded."""
    state = request.app.state
    states = _Components()
    redis: RedisHandle = state.redis
    reads: ReadRouter = state.reads

    async def check_database() -> None:
        states.database = await database_state(state.engine)

    async def check_storage() -> None:
        states.storage = await storage_state(state.storage)

    async def check_replica() -> None:
        with anyio.move_on_after(CHECK_TIMEOUT_SECONDS):
            states.database_replica = await reads.check()

    async def check_redis() -> None:
        if redis.enabled:
            with anyio.move_on_after(CHECK_TIMEOUT_SECONDS):
                await redis.ping()

    async with anyio.create_task_group() as group:
        group.start_soon(check_database)
        group.start_soon(check_storage)
        group.start_soon(check_replica)
        group.start_soon(check_redis)
    return states
