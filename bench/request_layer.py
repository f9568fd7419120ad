"""What the request-id and metrics layer (RequestContextMiddleware) costs per request, in a plain loop.

    backend/.venv/bin/python bench/request_layer.py

A bare ASGI app answering a small JSON body, called directly and through the layer with metrics off and
on, 200,000 requests each, twice. `make bench` pass 17 compares metrics and JSON logs on and off with the
layer in both servers (request ids are no setting); this gives the layer's own share.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from app.observability.request_context import RequestContextMiddleware

REQUESTS = 200_000


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def ignore(_message: Any) -> None:
    return None


async def nothing() -> dict[str, Any]:
    return {"type": "http.request"}


def new_scope() -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/api/v1/images/x", "headers": [], "client": ("1.2.3.4", 5)}


async def microseconds_per_request(app: Any) -> float:
    started = time.perf_counter()
    for _ in range(REQUESTS):
        await app(new_scope(), nothing, ignore)
    return (time.perf_counter() - started) / REQUESTS * 1e6


async def main() -> None:
    layers = {
        enabled: RequestContextMiddleware(
            bare, trusted_peers="127.0.0.1", metrics_enabled=enabled, access_log=False, slow_request_seconds=1
        )
        for enabled in (False, True)
    }
    for _ in range(2):
        alone = await microseconds_per_request(bare)
        off = await microseconds_per_request(layers[False])
        on = await microseconds_per_request(layers[True])
        print(f"bare app {alone:.2f} us; with the layer, metrics off +{off - alone:.2f} us, on +{on - alone:.2f} us")


if __name__ == "__main__":
    asyncio.run(main())
