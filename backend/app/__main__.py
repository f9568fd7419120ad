"""`python -m app`: serve Chitram with uvicorn on HOST:PORT (default 127.0.0.1:8000)."""

from __future__ import annotations

import logging
import os

import uvicorn

from app.config import load_settings_or_exit
from app.main import create_app


def main() -> None:
    settings = load_settings_or_exit()
    logging.basicConfig(
        level=logging.DEBUG if settings.debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        server_header=False,
    )


if __name__ == "__main__":
    main()
