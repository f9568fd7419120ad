"""Health endpoint for load balancers and monitoring."""

from __future__ import annotations

from importlib.metadata import version

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.schemas.health import ComponentState, HealthRead
from app.services.health import database_state, storage_state

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthRead,
    responses={503: {"model": HealthRead, "description": "A required dependency is unreachable."}},
)
async def health(request: Request) -> JSONResponse:
    """Readiness: real checks of the database and the storage."""
    states: dict[str, ComponentState] = {}

    async def check_database() -> None:
        states["database"] = await database_state(request.app.state.engine)

    async def check_storage() -> None:
        states["storage"] = await storage_state(request.app.state.storage)

    async with anyio.create_task_group() as group:
        group.start_soon(check_database)
        group.start_soon(check_storage)
    healthy = all(state == "connected" for state in states.values())
    report = HealthRead(
        status="healthy" if healthy else "unhealthy",
        version=version("chitram"),
        environment=request.app.state.settings.app_env,
        database=states["database"],
        storage=states["storage"],
    )
    return JSONResponse(report.model_dump(), status_code=200 if healthy else 503)
