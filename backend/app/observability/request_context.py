"""Each request's id, metrics and log line, in one ASGI layer (the outermost).

The id is the trusted proxy's `X-Request-ID` (Caddy sets one per request) or a new one; it is sent
back on every answer, put in every error envelope's `details.request_id` and on every log line written
while the request is answered, so a user's report can be found in the logs (docs/operations.md).

This layer sits outside `ProxyHeadersMiddleware` so it sees the real peer (only a trusted proxy may name
the id) and, after the answer, the client address that middleware resolved.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from contextvars import ContextVar
from ipaddress import ip_address, ip_network
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import tracing
from app.observability.metrics import TALLY

logger = logging.getLogger("chitram.requests")

REQUEST_ID_HEADER = b"x-request-id"
# Where a layer that answers before routing (near-cache hits, rate-limit refusals) names the route it
# stands for, since FastAPI's router never sets `scope["route"]` for those requests.
ROUTE_TEMPLATE_KEY = "chitram.route"
UNMATCHED_ROUTE = "unmatched"
SEEN_PEERS = 4096  # peers whose trust is remembered (forgotten all at once past this)
STATIC_ROUTE = "/static"

_request_id: ContextVar[str | None] = ContextVar("chitram_request_id", default=None)
# A proxy's id is logged and echoed: keep it short and printable so it cannot forge log lines.
_ACCEPTABLE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


# A request id names a request in logs and traces; it is no secret, and drawing 128 bits from the OS
# for each request cost a tenth of this layer. 64 random bits per process and a count are as unique.
_PROCESS_PREFIX = secrets.token_hex(8)
_numbers = itertools.count(1)


def new_request_id() -> str:
    """32 hex digits, unique across processes and restarts (a random prefix drawn per process)."""
    return f"{_PROCESS_PREFIX}{next(_numbers):016x}"


def current_request_id() -> str | None:
    """The id of the request being answered in this context, if any."""
    return _request_id.get()


class TrustedPeers:
    """The addresses `FORWARDED_ALLOW_IPS` trusts (as uvicorn reads it: `*`, addresses, networks)."""

    def __init__(self, spec: str) -> None:
        # As uvicorn.middleware.proxy_headers reads it: "*" only as the whole value; an entry that is not
        # an exact network (a host name, "10.0.0.1/8") is a literal.
        self.everyone = spec.strip() == "*"
        entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
        self._networks = []
        for entry in entries:
            try:
                self._networks.append(ip_network(entry))
            except ValueError:
                continue
        self._literal = frozenset(entries)
        self._seen: dict[str, bool] = {}

    def __contains__(self, host: str) -> bool:
        known = self._seen.get(host)
        if known is None:
            known = self._check(host)
            if len(self._seen) >= SEEN_PEERS:
                self._seen.clear()
            self._seen[host] = known
        return known

    def _check(self, host: str) -> bool:
        # Parsing an address costs microseconds; a host has few peers, so each is checked once.
        if self.everyone or host in self._literal:
            return True
        try:
            address = ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


def route_template(scope: Scope) -> str:
    """The route a request was answered by, as a bounded label: a template, never a path with ids."""
    route = scope.get("route")
    if route is not None:
        return str(route.path)
    named = scope.get(ROUTE_TEMPLATE_KEY)
    if named is not None:
        return str(named)
    if scope["path"].startswith(STATIC_ROUTE + "/"):
        return STATIC_ROUTE
    return UNMATCHED_ROUTE


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_peers: str,
        metrics_enabled: bool,
        access_log: bool,
        slow_request_seconds: float,
    ) -> None:
        self.app = app
        self.trusted = TrustedPeers(trusted_peers)
        self.metrics_enabled = metrics_enabled
        self.access_log = access_log
        self.slow_request_seconds = slow_request_seconds

    def _request_id(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                client = scope.get("client")
                if client and client[0] in self.trusted and _ACCEPTABLE_ID.fullmatch(value):
                    return str(value.decode("ascii"))
                break
        return new_request_id()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = self._request_id(scope)
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        token = _request_id.set(request_id)
        tracing.annotate_request(request_id)
        status = 500  # what the client gets if the app fails before answering (the server sends a 500)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        tally = TALLY
        tally.in_flight += 1
        failed = True
        try:
            await self.app(scope, receive, send_with_id)
            failed = False
        finally:
            tally.in_flight -= 1
            seconds = time.perf_counter() - started
            if self.metrics_enabled:
                tally.request(scope["method"], route_template(scope), status, seconds)
            if self.access_log or status >= 500 or seconds >= self.slow_request_seconds:
                _log_request(scope, route_template(scope), status, seconds)
            if not failed:
                # On a failure the id stays set: the 500 is answered (and the error logged) by Starlette's
                # outermost layer, after this one, and both should name it. Each request runs in a task
                # of its own, so it ends with that task.
                _request_id.reset(token)


def _log_request(scope: Scope, route: str, status: int, seconds: float) -> None:
    client = scope.get("client")
    fields: dict[str, Any] = {
        "method": scope["method"],
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "client": client[0] if client else None,
    }
    level = logging.ERROR if status >= 500 else logging.INFO
    # The route template, never the path or query: a path holds ids, a query may hold a share link's signature.
    logger.log(level, "%s %s %d %.1f ms", scope["method"], route, status, seconds * 1000, extra=fields)
