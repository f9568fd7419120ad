"""Error handling for people in a browser: an expired session goes to login, a lost page gets HTML."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.api.errors import error_json, http_error_response
from app.api.web_pages import SessionExpired
from app.api.web_support import CsrfRejected, login_url, render


async def _session_expired(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SessionExpired)
    destination = login_url(exc.next_path)
    if request.headers.get("HX-Request"):
        # HTMX follows HX-Redirect with a full page load, whatever the status.
        response: Response = Response(status_code=401, headers={"HX-Redirect": destination})
    else:
        response = RedirectResponse(destination, status_code=303)
    response.delete_cookie(request.app.state.session_cookie_name, path="/")
    return response


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _wants_html(request: Request) -> bool:
    return not _is_api(request) and "text/html" in request.headers.get("accept", "")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and _wants_html(request):
        return render(request, "404.html", status_code=404)
    return await http_error_response(request, exc)


async def _csrf_rejected(request: Request, exc: Exception) -> Response:
    """The API answers in its JSON envelope; a form gets a page, an HTMX request a fragment, in words."""
    assert isinstance(exc, CsrfRejected)
    if _is_api(request):
        return error_json(exc.status_code, exc.code, exc.message, exc.details, exc.headers)
    if request.headers.get("HX-Request"):
        return render(request, "_error.html", {"message": exc.message}, status_code=exc.status_code)
    context = {"title": "Request refused", "message": exc.message}
    return render(request, "error.html", context, status_code=exc.status_code)


def install_web_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SessionExpired, _session_expired)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(CsrfRejected, _csrf_rejected)
