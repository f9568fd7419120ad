"""`python -m app`: serve Chitram with uvicorn on HOST:PORT (default 127.0.0.1:8000), WEB_CONCURRENCY processes."""

from __future__ import annotations

import os

from app.observability.processes import share_metrics_between_processes


def main() -> None:
    # Before anything imports prometheus_client: every process of this server adds to one set of figures.
    share_metrics_between_processes()
    import uvicorn

    from app.config import load_settings_or_exit
    from app.main import create_serving_app
    from app.observability.logs import configure_logging

    settings = load_settings_or_exit()
    # This process's own lines too (with several workers it only supervises them; each configures its own).
    configure_logging(settings.effective_log_format, settings.log_level)
    options = {
        "host": os.environ.get("HOST", "127.0.0.1"),
        "port": int(os.environ.get("PORT", "8000")),
        # The app resolves X-Forwarded-For itself (FORWARDED_ALLOW_IPS, ProxyHeadersMiddleware in main.py).
        "proxy_headers": False,
        "server_header": False,
        # Requests are logged by the app (RequestContextMiddleware, ACCESS_LOG), in the configured format.
        "access_log": False,
        # Logging is the app's (app.observability.logs), configured in each serving process.
        "log_config": None,
    }
    if settings.web_concurrency > 1:
        # Several processes: uvicorn starts each from the import string, and each builds its own app.
        uvicorn.run("app.main:app_factory", factory=True, workers=settings.web_concurrency, **options)  # type: ignore[arg-type]
    else:
        uvicorn.run(create_serving_app(settings), **options)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
