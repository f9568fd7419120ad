"""The worker tier's `/metrics`: a small HTTP server summing every worker process's figures.

The supervisor runs it in a process of its own (it starts no threads itself: it forks workers), on
WORKER_METRICS_HOST:WORKER_METRICS_PORT, under the same rule as the API's `/metrics` (a bearer of
METRICS_TOKEN, or with no token a client on a loopback or private address).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import ThreadingWSGIServer

from app.observability.metrics import exposition

logger = logging.getLogger(__name__)

# The exit status when the port is taken: starting again would not help, so the supervisor does not.
CANNOT_LISTEN = 3

# Loopback and the private ranges (RFC 1918, IPv6 unique local): where a host's Prometheus scrapes from.
# Not Python's `is_private`, which also counts the documentation ranges (198.51.100.0/24 and others).
OPERATOR_NETWORKS = tuple(
    ip_network(network)
    for network in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7")
)


def scrape_allowed(token: str | None, authorization: str | None, client_host: str | None) -> bool:
    """The scrape rule of ADR 0018, shared with the API's `/metrics`."""
    if token is not None:
        return hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode())
    if client_host is None:
        return False
    try:
        address = ip_address(client_host)
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in OPERATOR_NETWORKS)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


def make_app(token: str | None) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics" or not scrape_allowed(
            token, environ.get("HTTP_AUTHORIZATION"), environ.get("REMOTE_ADDR")
        ):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        body, content_type = exposition(accept=environ.get("HTTP_ACCEPT"))
        start_response("200 OK", [("Content-Type", content_type), ("Cache-Control", "no-store")])
        return [body]

    return app


def serve(host: str, port: int, token: str | None) -> None:
    """Serve until the process is killed (the supervisor stops it with its workers)."""
    try:
        server = make_server(host, port, make_app(token), ThreadingWSGIServer, handler_class=_Quiet)
    except OSError as error:
        logger.error("worker metrics: cannot listen on %s:%d (%s); set WORKER_METRICS_PORT", host, port, error)
        raise SystemExit(CANNOT_LISTEN) from None
    logger.info("worker metrics on http://%s:%d/metrics", host, port)
    server.serve_forever()
