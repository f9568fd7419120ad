"""Server-rendered pages (Jinja2 + HTMX): gallery, upload, image page, login and register."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import RedirectResponse, Response

from app.api.deps import ReadsDep
from app.api.web_support import login_url, render, safe_next
from app.errors import ImageNotFound, Unauthorized
from app.media.formats import GIF, JPEG, PNG
from app.models import User
from app.schemas.image import ImageRead
from app.services import auth_service, image_access, image_service
from app.services.credentials import login_principal
from app.services.tokens import decode_access_token

router = APIRouter(include_in_schema=False)

GALLERY_PAGE_SIZE = 20


class SessionExpired(Exception):
    """The browser's session cookie is no longer valid: send the user to log in again."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def _return_path(request: Request) -> str:
    """Where to come back to after logging in again: the page in the address bar, never a fragment."""
    if request.headers.get("HX-Request"):
        # HTMX names the page it was called from; only its path is kept, so it stays on this site.
        page = urlsplit(request.headers.get("HX-Current-URL", ""))
        return safe_next(page.path + (f"?{page.query}" if page.query else ""))
    if request.method != "GET" or request.url.path.startswith("/partials/"):
        return "/"
    if request.url.path in {"/login", "/register"}:
        return safe_next(request.query_params.get("next"))
    query = request.url.query
    return safe_next(request.url.path + (f"?{query}" if query else ""))


async def web_user(request: Request) -> User | None:
    """The logged-in user of this browser, None for a visitor; an expired session goes to login."""
    token = request.cookies.get(request.app.state.session_cookie_name)
    user = None
    if token:
        try:
            claims = decode_access_token(token, secret=request.app.state.jwt_secret)
            user = await auth_service.load_token_user(request.app.state.sessionmaker, claims.user_id, claims.version)
        except Unauthorized:
            raise SessionExpired(_return_path(request)) from None
    request.state.user = user
    return user


WebUserDep = Annotated[User | None, Depends(web_user)]


async def _gallery_page(
    request: Request, reads: ReadsDep, user: User, cursor: str | None
) -> tuple[list[ImageRead], str | None]:
    images, next_cursor = await reads.run(
        lambda session: image_service.list_user_images(session, user, limit=GALLERY_PAGE_SIZE, cursor=cursor)
    )
    widths = request.app.state.settings.variant_widths
    return [ImageRead.describe(image, widths) for image in images], next_cursor


@router.get("/")
async def home(request: Request, reads: ReadsDep, user: WebUserDep) -> Response:
    if user is None:
        return render(request, "index.html")
    items, next_cursor = await _gallery_page(request, reads, user, None)
    return render(request, "index.html", {"items": items, "next_cursor": next_cursor})


@router.get("/my-images")
async def my_images(request: Request, reads: ReadsDep, user: WebUserDep) -> Response:
    if user is None:
        return RedirectResponse(login_url("/my-images"), status_code=303)
    items, next_cursor = await _gallery_page(request, reads, user, None)
    return render(request, "my_images.html", {"items": items, "next_cursor": next_cursor})


@router.get("/partials/gallery")
async def gallery_partial(
    request: Request,
    reads: ReadsDep,
    user: WebUserDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    if user is None:
        raise SessionExpired("/")
    items, next_cursor = await _gallery_page(request, reads, user, cursor)
    return render(request, "_gallery_items.html", {"items": items, "next_cursor": next_cursor})


@router.get("/upload")
async def upload_page(request: Request, user: WebUserDep) -> Response:
    return render(request, "upload.html")


@router.get("/image/{image_id}")
async def image_page(image_id: str, request: Request, reads: ReadsDep, user: WebUserDep) -> Response:
    try:
        image = await reads.run(lambda session: image_service.get_image(session, image_id))
    except ImageNotFound:
        return render(request, "404.html", {"what": "image"}, status_code=404)
    # An expired image is gone for everyone; a private one is, to all but its owner, as unknown as a made-up id.
    if not image_access.visible_to(image, None if user is None else login_principal(user)):
        return render(request, "404.html", {"what": "image"}, status_code=404)
    is_owner = user is not None and image.owner_id == user.id
    described = ImageRead.describe(image, request.app.state.settings.variant_widths)
    base_url = str(request.base_url).rstrip("/")
    private = image_access.is_private(image)
    return render(
        request,
        "image.html",
        {
            "image": described,
            "direct_url": base_url + described.url,
            "page_url": base_url + described.page_url,
            # A private image's picture never goes into tags that chat apps and crawlers read.
            "preview": None if private else link_preview(described, base_url),
            "noindex": private or image.expires_at is not None,
            "can_share": is_owner and private,
            "can_delete_as_owner": is_owner,
            "needs_delete_token": image.owner_id is None,
        },
    )


@dataclass(frozen=True)
class LinkPreview:
    """The picture a link preview (OpenGraph, Twitter card) shows: an absolute URL, its size and type."""

    url: str
    width: int
    height: int
    content_type: str


# Link previews (Slack, Discord, Telegram, iMessage, Facebook, X) show these as they are; a GIF stays
# the original, so an animation still plays. Anything else is offered as a JPEG variant.
PREVIEW_AS_IS = frozenset({JPEG, PNG})
PREVIEW_WIDTH = 1200  # what the big previews draw; smaller images are offered at their own size


def link_preview(image: ImageRead, base_url: str) -> LinkPreview | None:
    """The picture for an image's link previews, None when none can be offered."""
    if image.content_type == GIF:
        return LinkPreview(base_url + image.url, image.width, image.height, GIF)
    if image.thumbnail_status == "failed" and image.content_type not in PREVIEW_AS_IS:
        return None  # a variant is read as the thumbnail was: it would fail too
    smaller = PREVIEW_WIDTH in image.variant_widths
    # The variant's size, as the renderer fits it: PREVIEW_WIDTH wide, never upscaled (EXIF
    # orientation aside, which the row does not record).
    width, height = image.width, image.height
    if smaller and image.width > PREVIEW_WIDTH:
        width, height = PREVIEW_WIDTH, max(1, round(image.height * PREVIEW_WIDTH / image.width))
    if image.content_type in PREVIEW_AS_IS:
        query = f"?w={PREVIEW_WIDTH}" if smaller else ""
        return LinkPreview(base_url + image.url + query, width, height, image.content_type)
    query = f"?w={PREVIEW_WIDTH}&format=jpeg" if smaller else "?format=jpeg"
    return LinkPreview(base_url + image.url + query, width, height, JPEG)


@router.get("/login")
async def login_page(request: Request, user: WebUserDep, next: str | None = None) -> Response:
    if user is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", {"next": safe_next(next)})


@router.get("/register")
async def register_page(request: Request, user: WebUserDep, next: str | None = None) -> Response:
    if user is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "register.html", {"next": safe_next(next)})
