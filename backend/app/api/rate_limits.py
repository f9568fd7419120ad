"""Rate limits as ASGI middleware, so a refused request is answered before its body is read.

FastAPI reads a JSON or form body before it runs any dependency, so a dependency could not keep
a flood of login attempts from being parsed. Requests are counted per user when they carry a
valid access token and per client address otherwise (the address comes from the socket, or from
X-Forwarded-For only when the peer is a trusted proxy: ProxyHeadersMiddleware runs first).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_json
from app.api.web_support import render
from app.config import Settings
from app.errors import RateLimitExceeded, Unauthorized
from app.observability.metrics import RATE_LIMIT_REFUSALS, UPLOADS
from app.observability.request_context import ROUTE_TEMPLATE_KEY
from app.services import api_keys
from app.services.rate_limit import RateLimiter, RateLimitResult
from app.services.tokens import decode_access_token

LimitFor = Callable[[Settings], int]

# Scopes counted per client address even for a logged-in caller: who is logged in does not matter
# to a login or a registration, and counting them per account would give every account a new budget.
ADDRESS_ONLY_SCOPES = frozenset({"auth"})

# (method, path) -> (scope shared by the routes it names, limit per minute)
LIMITED_ROUTES: dict[tuple[str, str], tuple[str, LimitFor]] = {
    ("POST", "/api/v1/images/upload"): ("upload", lambda settings: settings.rate_limit_per_minute),
    ("POST", "/api/v1/auth/login"): ("auth", lambda settings: settings.auth_rate_limit_per_minute),
    ("POST", "/api/v1/auth/register"): ("auth", lambda settings: settings.auth_rate_limit_per_minute),
    ("POST", "/api/v1/auth/token"): ("auth", lambda settings: settings.auth_rate_limit_per_minute),
    # Both check the password again: a stolen session must not be a free password oracle.
    ("POST", "/api/v1/users/me/password"): ("auth", lambda settings: settings.auth_rate_limit_per_minute),
    ("DELETE", "/api/v1/users/me"): ("auth", lambda settings: settings.auth_rate_limit_per_minute),
    ("POST", "/account/password"): ("auth", lambda settings: settings.auth_rate_limit_per_minute),
    ("POST", "/account/delete"): ("auth", lambda settings: settings.auth_rate_limit_per_minute),
    # The web UI's forms share the same budgets as the API they stand for.
    ("POST", "/upload"): ("upload", lambda settings: settings.rate_limit_per_minute),
    ("POST", "/login"): ("auth", lambda settings: settings.auth_rate_limit_per_minute),
    ("POST", "/register"): ("auth", lambda settings: settings.auth_rate_limit_per_minute),
}


def _bearer_token(scope: Scope, cookie_name: str) -> str | None:
    headers = Headers(scope=scope)
    api_key = headers.get("x-api-key")
    if api_key:
        return api_key
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == cookie_name and value:
            return value
    return None


def client_identity(scope: Scope, *, by_user: bool = True) -> str:
    """`user:<id>` for a valid access token, `key:<public id>` for an API key (when `by_user`), else `ip:<address>`.

    A key is counted by its own public id, read without a database lookup: a key that turns out to be
    bad is refused by the endpoint before its body is read.
    """
    app_state = scope["app"].state
    token = _bearer_token(scope, app_state.session_cookie_name) if by_user else None
    if token and api_keys.looks_like_key(token):
        parts = api_keys.split_key(token)
        if parts is not None:
            return f"key:{parts[0]}"
    elif token:
        try:
            return f"user:{decode_access_token(token, secret=app_state.jwt_secret).user_id}"
        except Unauthorized:
            pass  # a bad token is refused by the endpoint; count it by address meanwhile
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = LIMITED_ROUTES.get((scope["method"], scope["path"]))
        if rule is None:
            await self.app(scope, receive, send)
            return
        name, limit_for = rule
        app_state = scope["app"].state
        limiter: RateLimiter = app_state.rate_limiter
        identity = client_identity(scope, by_user=name not in ADDRESS_ONLY_SCOPES)
        admission = await limiter.admit(name, identity, limit_for(app_state.settings))
        try:
            if not admission.allowed:
                refusal = await admission.result()
                RATE_LIMIT_REFUSALS.labels(name).inc()
                if name == "upload":
                    UPLOADS.labels(RateLimitExceeded.code).inc()
                scope[ROUTE_TEMPLATE_KEY] = scope["path"]  # one of LIMITED_ROUTES: a literal path, bounded
                if scope["path"].startswith("/api/"):
                    await _refuse(refusal, scope, receive, send)
                else:
                    await _refuse_page(refusal, scope, receive, send)
                return

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    # The window's figures have been on their way since the hit; they are needed only now.
                    result = await admission.result()
                    headers = MutableHeaders(scope=message)
                    for key, value in result.headers().items():
                        headers[key] = value
                await send(message)

            await self.app(scope, receive, send_with_headers)
        finally:
            admission.discard()


async def _refuse_page(result: RateLimitResult, scope: Scope, receive: Receive, send: Send) -> None:
    """People at a web form get the refusal in words (a page, or a fragment for HTMX), not JSON."""
    request = Request(scope, receive)
    message = f"Too many attempts. Please wait {result.retry_after_seconds} seconds and try again."
    if request.headers.get("HX-Request"):
        response = render(request, "_error.html", {"message": message}, status_code=429)
    else:
        response = render(request, "error.html", {"title": "Slow down", "message": message}, status_code=429)
    response.headers.update(result.headers())
    await response(scope, receive, send)


async def _refuse(result: RateLimitResult, scope: Scope, receive: Receive, send: Send) -> None:
    error = RateLimitExceeded(
        f"Too many requests; try again in {result.retry_after_seconds} seconds.",
        details={"limit": result.limit, "retry_after_seconds": result.retry_after_seconds},
    )
    response = error_json(error.status_code, error.code, error.message, error.details, result.headers())
    await response(scope, receive, send)
