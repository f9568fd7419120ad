"""Exception handlers: every failure leaves the service in the one error envelope."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from app.errors import AppError, ServiceUnavailable
from app.observability.request_context import current_request_id

logger = logging.getLogger(__name__)

# Framework-raised HTTP errors (unknown route, wrong method, ...) get codes like our own.
HTTP_STATUS_CODES = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "FILE_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMIT_EXCEEDED",
    503: "SERVICE_UNAVAILABLE",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The envelope; `details.request_id` names the request, so a user's report can be found in the logs."""
    request_id = current_request_id()
    if request_id is not None:
        details = {**(details or {}), "request_id": request_id}
    return {"detail": {"code": code, "message": message, "details": details or {}}}


def error_json(
    status: int, code: str, message: str, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def validation_details(errors: Any) -> dict[str, Any]:
    """Field errors without the rejected input (it may be a password) or documentation links."""
    cleaned = [{key: value for key, value in error.items() if key in {"loc", "msg", "type", "ctx"}} for error in errors]
    return {"errors": jsonable_encoder(cleaned, custom_encoder={Exception: str})}


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_json(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_json(422, "VALIDATION_ERROR", "The request did not pass validation.", validation_details(exc.errors()))


async def http_error_response(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_STATUS_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and (allowed := _allowed_methods(request)):
        headers["Allow"] = allowed
    return error_json(exc.status_code, code, message, headers=headers)


def _allowed_methods(request: Request) -> str:
    """The methods of this path's resource, which a 405's `Allow` must list (RFC 9110 §15.5.6).

    The router's own 405 names only the methods of the first route it tried, and a path often has
    several (`GET` and `DELETE /api/v1/images/{id}`; `GET` and `HEAD` of a file). As in OpenAPI, a
    concrete path is that resource rather than a template it also fits (`/api/v1/images/upload`).
    """
    path = request.scope["path"]
    methods_by_templating: dict[int, set[str]] = {}
    for route in iter_route_contexts(request.app.routes):
        if route.methods and route.path_regex.match(path):
            methods_by_templating.setdefault(len(route.path_regex.groupindex), set()).update(route.methods)
    if not methods_by_templating:
        return ""
    return ", ".join(sorted(methods_by_templating[min(methods_by_templating)]))


# Failures to reach the database are an outage (503, retry later), not a bug (500).
DATABASE_OUTAGES = (OperationalError, InterfaceError, PoolTimeoutError, ConnectionError, TimeoutError)


async def _database_outage(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("database unreachable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    outage = ServiceUnavailable("The database is unavailable; try again later.", headers={"Retry-After": "5"})
    return await _app_error(request, outage)


def _unexpected_error_handler(debug: bool) -> Any:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        details: dict[str, Any] = {}
        if debug:
            details = {"exception": repr(exc), "traceback": traceback.format_exception(exc)}
        # Answered after RequestContextMiddleware has finished, so the id header is added here.
        request_id = current_request_id()
        headers = {"X-Request-ID": request_id} if request_id else None
        return error_json(500, "INTERNAL_ERROR", "Internal server error.", details, headers)

    return handler


def install_error_handlers(app: FastAPI, *, debug: bool) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error_response)
    for outage in DATABASE_OUTAGES:
        app.add_exception_handler(outage, _database_outage)
    app.add_exception_handler(Exception, _unexpected_error_handler(debug))
