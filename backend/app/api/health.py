"""Health endpoint for load balancers and monitoring."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.schemas.health import ComponentState, HealthRead, UploadConcurrency
from app.services.concurrency import UploadSlots
from app.services.health import CHECK_TIMEOUT_SECONDS, database_state, storage_state
from app.services.rate_limit import RateLimiter
from app.services.redis_client import RedisHandle

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthRead,
    responses={503: {"model": HealthRead, "description": "The database or the storage is unreachable."}},
)
async def health(request: Request) -> JSONResponse:
    """Readiness: real checks of the database, the storage and Redis."""
    state = request.app.state
    states: dict[str, ComponentState] = {}
    redis: RedisHandle = state.redis

    async def check_database() -> None:
        states["database"] = await database_state(state.engine)

    async def check_storage() -> None:
        states["storage"] = await storage_state(state.storage)

    async def check_redis() -> None:
        if redis.enabled:
            with anyio.move_on_after(CHECK_TIMEOUT_SECONDS):
                await redis.ping()

    async with anyio.create_task_group() as group:
        group.start_soon(check_database)
        group.start_soon(check_storage)
        group.start_soon(check_redis)
    required_up = states["database"] == "connected" and states["storage"] == "connected"
    cache_state = redis.state()
    status = "unhealthy" if not required_up else "degraded" if cache_state == "disconnected" else "healthy"
    slots: UploadSlots = state.upload_slots
    limiter: RateLimiter = state.rate_limiter
    report = HealthRead(
        status=status,
        version=request.app.version,
        environment=state.settings.app_env,
        database=states["database"],
        storage=states["storage"],
        cache=cache_state,
        rate_limiter=limiter.state(),
        upload_concurrency=UploadConcurrency(limit=slots.limit, in_use=slots.in_use, waiting=slots.waiting),
    )
    return JSONResponse(report.model_dump(), status_code=503 if status == "unhealthy" else 200)
