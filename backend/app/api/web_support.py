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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response
from starlette.types import Scope

from app.config import Settings
from app.errors import Forbidden
from app.media.formats import BROWSER_NATIVE, EXTENSIONS, HEIC, HEIF, LABELS
from app.media.placeholders import placeholder_data_url
from app.models import User
from app.schemas.image import ImageRead
from app.services.tokens import create_access_token

APP_DIR = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = APP_DIR / "templates"
STATIC_DIR = APP_DIR / "static"
CSRF_COOKIE_NAME = "chitram_csrf"
CSRF_HEADER_NAME = "X-CSRF-Token"
CSRF_FIELD_NAME = "csrf_token"
CSRF_COOKIE_MAX_AGE = 60 * 60 * 24 * 30
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The upload form's expiry choices: (`expires_in` value, label, days it takes); "" is never.
EXPIRY_CHOICES = (
    ("", "Never", 0),
    ("1h", "1 hour", 1),
    ("1d", "1 day", 1),
    ("7d", "7 days", 7),
    ("30d", "30 days", 30),
)

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
    templates.env.globals["expiry_choices"] = [
        (value, label) for value, label, days in EXPIRY_CHOICES if days <= settings.max_expiry_days
    ]
    templates.env.globals["shown_as_variants"] = shown_as_variants
    templates.env.globals["variant_url"] = variant_url
    templates.env.globals["variant_srcset"] = variant_srcset
    templates.env.globals["tile_sizes"] = tile_sizes
    templates.env.globals["page_sizes"] = page_sizes
    templates.env.globals["sizer_url"] = sizer_url
    templates.env.filters["placeholder_url"] = placeholder_url
    templates.env.filters["byte_size"] = byte_size
    templates.env.filters["time_left"] = time_left
    templates.env.filters["utc_minute"] = utc_minute
    return templates


def byte_size(count: int) -> str:
    """`1.4 MB`, `820 KB`, `12 bytes`: binary units, as the upload page's limit is written."""
    if count < 1024:
        return f"{count} byte" + ("" if count == 1 else "s")
    for unit, size in (("GB", 1024**3), ("MB", 1024**2)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{round(count / 1024)} KB"


def time_left(moment: datetime, now: datetime | None = None) -> str:
    """How long until `moment`, rounded in its largest unit: `7 days`, `5 hours`, `1 minute`, `moments`.

    A minute's slack per unit, so an image just uploaded to last 7 days says 7 days, not 6.
    """
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size - 59:
            amount = max(1, round(seconds / size))
            return f"{amount} {unit}" + ("" if amount == 1 else "s")
    return "moments"


def utc_minute(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# Pictures on pages come as variants (`?w=&format=auto`: AVIF or WebP where the browser takes them),
# so a phone fetches a few kilobytes, and HEIC shows everywhere. The direct link and Download stay
# the original's. Widths are the stored ones, before EXIF orientation: a quarter-turned photo's box
# is the wrong way round, and its picture is fitted inside it (smaller, never stretched).
def shown_as_variants(image: ImageRead) -> bool:
    """Whether pages show this image through its variants (else the original, or words about it)."""
    # Once the thumbnail job has read it; before, only a format the browser reads anyway (so a HEIC
    # page waits for it). A variant is read as the thumbnail was: where that failed, it would too.
    if image.thumbnail_status == "pending":
        return image.content_type in BROWSER_NATIVE
    return image.thumbnail_ready


def variant_url(image: ImageRead, width: int | None = None) -> str:
    """The image `width` px wide (None: full size), in the best format this browser accepts."""
    if width is None or width >= image.width:
        # At full size a browser reads the original itself (stripped of metadata already): a converted
        # copy would save bytes, but its first view would wait seconds for a large AVIF. Only HEIC and
        # HEIF come converted at full size.
        return image.url if image.content_type in BROWSER_NATIVE else f"{image.url}?format=auto"
    return f"{image.url}?w={width}&format=auto"


def variant_srcset(image: ImageRead) -> str:
    """Every width served below the image's own, then the full size at its own width."""
    smaller = [f"{variant_url(image, width)} {width}w" for width in image.variant_widths if width < image.width]
    return ", ".join([*smaller, f"{variant_url(image)} {image.width}w"])


def _times(length: str, factor: float) -> str:
    if factor != 1:
        return f"calc(({length}) * {factor:.4g})"
    return f"calc({length})" if " " in length else length


# A gallery tile's width, by viewport (app.css: a 1100 px container with 1rem padding, columns of at
# least 140 px, or 200 px from 720 px, .75rem apart): the widest a tile gets in each range.
_TILE_WIDTHS = (
    ("(min-width: 1100px) ", "205px"),
    ("(min-width: 720px) ", "270px"),
    ("(min-width: 476px) ", "192px"),
    ("(min-width: 324px) ", "50vw - 22px"),
    ("", "100vw - 32px"),
)


def tile_sizes(image: ImageRead) -> str:
    """`sizes` for a square tile: the picture covers it, so a wide one is needed wider than the tile."""
    factor = max(1.0, image.width / image.height)
    return ", ".join(condition + _times(width, factor) for condition, width in _TILE_WIDTHS)


def page_sizes(image: ImageRead) -> str:
    """`sizes` for the image page: its own width at most, within the frame and 70% of the viewport's height.

    The plain fallback after it is for browsers that cannot read min() there.
    """
    ratio = image.width / image.height
    return f"min(100vw - 50px, 1050px, {image.width}px, 70vh * {ratio:.4g}), calc(100vw - 50px)"


def sizer_url(image: ImageRead) -> str:
    """An empty SVG of the picture's size: laid out at once (a data URL needs no request), it gives the
    picture's box its exact shape under max-width and max-height before a byte of the picture arrives.
    """
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{image.width}" height="{image.height}"></svg>'
    return "data:image/svg+xml," + quote(svg, safe="=:/")


def placeholder_url(thumbhash: str | None) -> str | None:
    """The blurred sketch of a picture as a data URL, None while there is none (or it is not valid)."""
    return placeholder_data_url(thumbhash) if thumbhash else None


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


def logged_in_redirect(request: Request, user: User, next_path: str, settings: Settings) -> Response:
    """Send the browser on to `next_path` with a fresh session for `user` (login, registration, new password)."""
    token, _ = create_access_token(
        user.id,
        version=user.token_version,
        secret=request.app.state.jwt_secret,
        expire_minutes=settings.jwt_expire_minutes,
    )
    response = RedirectResponse(safe_next(next_path), status_code=303)
    set_session_cookie(response, token, settings, request.app.state.session_cookie_name)
    return response
