"""`GET /metrics`: Prometheus's scrape, for the operator's network only (ADR 0018)."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

from app.config import Settings
from app.observability.metrics import TALLY, exposition
from app.observability.scrape_server import scrape_allowed
from app.services.operational_figures import current_figures

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Every process's figures summed, and the deployment's read now; 404 to anyone but the operator."""
    state = request.app.state
    settings: Settings = state.settings
    client = request.client.host if request.client else None
    # The client address is the one ProxyHeadersMiddleware resolved: a request Caddy relays from the internet
    # counts as the internet's (and the Caddyfile refuses /metrics before that anyway).
    if not settings.metrics_enabled or not scrape_allowed(
        settings.metrics_token, request.headers.get("authorization"), client
    ):
        raise HTTPException(404)  # the same answer as a path that does not exist
    figures = await current_figures(state.sessionmaker, state.storage, state.job_queue)
    TALLY.flush(scraping=True)  # on the loop, where requests add to it
    body, content_type = await anyio.to_thread.run_sync(exposition, figures, request.headers.get("accept"))
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})
