"""`python -m app`: serve Chitram with uvicorn on HOST:PORT (default 127.0.0.1:8000)."""

from __future__ import annotations

import logging
import os

import uvicorn

from app.config import load_settings_or_exit
from app.main import create_serving_app


def main() -> None:
    settings = load_settings_or_exit()
    logging.basicConfig(
        level=logging.DEBUG if settings.debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_serving_app(settings),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        # The app resolves X-Forwarded-For itself (FORWARDED_ALLOW_IPS, ProxyHeadersMiddleware in main.py).
        proxy_headers=False,
        server_header=False,
        # Caddy writes the access log in production; a per-request log line costs throughput here.
        access_log=settings.debug,
    )


if __name__ == "__main__":
    main()
