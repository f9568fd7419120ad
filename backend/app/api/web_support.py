"""What every web page needs: templates, versioned static files, the session cookie, CSRF, headers.

The browser session is an HttpOnly cookie holding the same access token the API accepts (so the
API's own dependencies authenticate web requests). CSRF uses the double-submit pattern: a random
token in an HttpOnly SameSite cookie, echoed by every state-changing form (`csrf_token` field) or
HTMX request (`X-CSRF-Token` header, set once on <body>), compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.responses import Response
from starlette.types import Scope

from app.config import Settings
from app.errors import Forbidden
from app.media.formats import BROWSER_NATIVE, EXTENSIONS, HEIC, HEIF, LABELS

APP_DIR = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = APP_DIR / "templates"
STATIC_DIR = APP_DIR / "static"
CSRF_COOKIE_NAME = "chitram_csrf"
CSRF_HEADER_NAME = "X-CSRF-Token"
CSRF_FIELD_NAME = "csrf_token"
CSRF_COOKIE_MAX_AGE = 60 * 60 * 24 * 30
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# No inline scripts or styles anywhere: everything comes from /static. blob: is for upload previews.
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # pages carry the user's email and CSRF token
}


def _file_versions(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


class VersionedStaticFiles(StaticFiles):
    """Static files whose URLs carry a content hash (`?v=`), so they can be cached forever."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200 and b"v=" in scope.get("query_string", b""):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def create_templates(settings: Settings) -> Jinja2Templates:
    """Jinja2 with autoescaping and a `static_url()` that appends each file's content hash."""
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    versions = _file_versions(STATIC_DIR)

    def static_url(name: str) -> str:
        return f"/static/{name}?v={versions[name]}"

    templates.env.globals["static_url"] = static_url
    templates.env.globals["max_upload_bytes"] = settings.max_file_size_bytes
    allowed = settings.allowed_content_types
    templates.env.globals["allowed_types"] = ",".join(allowed)
    # File pickers map HEIC and AVIF to their MIME types unevenly: extensions are offered too.
    templates.env.globals["accepted_files"] = ",".join([*allowed, *sorted({EXTENSIONS[kind] for kind in allowed})])
    labels = [LABELS[kind] for kind in allowed if not (kind == HEIF and HEIC in allowed)]
    templates.env.globals["allowed_formats_label"] = _join_words(labels)
    templates.env.globals["browser_native_types"] = BROWSER_NATIVE
    templates.env.globals["allow_anonymous_uploads"] = settings.allow_anonymous_uploads
    return templates


def _join_words(words: list[str]) -> str:
    """ "A", "A or B", "A, B or C"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def csrf_token_for(request: Request) -> str:
    """This browser's CSRF token (made on first use; `render` sets the cookie)."""
    token: str | None = getattr(request.state, "csrf_token", None)
    if token is None:
        token = request.cookies.get(CSRF_COOKIE_NAME) or secrets.token_urlsafe(32)
        request.state.csrf_token = token
    return token


class CsrfRejected(Forbidden):
    """A state-changing request that did not echo this browser's CSRF token (403 FORBIDDEN).

    Its own class so that a browser is answered with a page or fragment in words, the API with JSON.
    """

    default_message = "The form has expired or did not come from this site; reload the page and try again."


def check_csrf(request: Request, form_token: str | None = None) -> None:
    """403 FORBIDDEN unless the form field or header echoes the CSRF cookie."""
    cookie = request.cookies.get(CSRF_COOKIE_NAME)
    presented = form_token or request.headers.get(CSRF_HEADER_NAME)
    if not cookie or not presented or not hmac.compare_digest(cookie.encode(), presented.encode()):
        raise CsrfRejected(details={"reason": "csrf"})


def set_csrf_cookie(request: Request, response: Response, settings: Settings) -> None:
    token = getattr(request.state, "csrf_token", None)
    if token and request.cookies.get(CSRF_COOKIE_NAME) != token:
        response.set_cookie(
            CSRF_COOKIE_NAME,
            token,
            max_age=CSRF_COOKIE_MAX_AGE,
            httponly=True,
            samesite="lax",
            secure=settings.app_env == "production",
        )


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status_code: int = 200
) -> Response:
    """A page or fragment with the security headers, the CSRF token and the current user."""
    templates: Jinja2Templates = request.app.state.templates
    full_context = {"csrf_token": csrf_token_for(request), "user": getattr(request.state, "user", None)}
    full_context.update(context or {})
    response = templates.TemplateResponse(request, template, full_context, status_code=status_code)
    response.headers.update(PAGE_SECURITY_HEADERS)
    set_csrf_cookie(request, response, request.app.state.settings)
    return response


def set_session_cookie(response: Response, token: str, settings: Settings, cookie_name: str) -> None:
    """The session: HttpOnly (no script reads it), SameSite=Lax, Secure in production, token's lifetime."""
    response.set_cookie(
        cookie_name,
        token,
        max_age=settings.jwt_expire_minutes * 60,
        httponly=True,
        samesite="lax",
        secure=settings.app_env == "production",
        path="/",
    )


def safe_next(candidate: str | None, default: str = "/") -> str:
    """`candidate` if it is a path on this site, else `default` (no open redirects)."""
    if not candidate or not candidate.startswith("/") or candidate.startswith("//") or "\\" in candidate:
        return default
    if any(ord(char) < 32 or ord(char) == 127 for char in candidate):
        return default
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return default  # e.g. an unbalanced "[": not a path we made
    if parts.scheme or parts.netloc:
        return default
    return candidate


def login_url(next_path: str) -> str:
    return f"/login?next={quote(next_path, safe='/')}"
