"""Who may read an image, and for how long answers about it may be kept (ADR 0017).

An image past its `expires_at` is gone for everyone (404), whatever still holds its row or metadata.
An `unlisted` image is read by anyone with its link; a `private` one only by its owner (a login, or an
API key with `images:read`) and through the signed links the owner hands out (`share_links`). To anyone
else a private image answers exactly as an unknown id does, so nothing tells that it exists.

The rules read either an image row or its metadata (`image_service.get_image_metadata`'s value, where
`expires_at` is an ISO string and a private image carries its `owner_id`), so the API, the web pages
and the near-cache middleware decide alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from app.errors import Forbidden, ImageNotFound, Unauthorized
from app.models import Image, Visibility
from app.models.base import utc_now
from app.services import share_links
from app.services.credentials import Principal
from app.services.share_links import SharedFile, SharePass

READ_SCOPE = "images:read"
# The longest a cache may keep an answer about an image that ends (expiry) or a signed link's answer.
MAX_CACHE_SECONDS = 31_536_000
# A signed link's answer may be kept by the browser that opened it, never longer than this.
SHARED_CACHE_SECONDS = 3600
# What a private image's files say to every cache: the owner's browser only, not even on disk.
PRIVATE_NO_STORE = "private, no-store"

ImageLike = Image | Mapping[str, Any]
PrincipalLoader = Callable[[], Awaitable[Principal | None]]


@lru_cache(maxsize=1024)
def _parse_moment(text: str) -> datetime:
    # Cached metadata repeats the same few strings on every hit of a hot expiring image.
    return datetime.fromisoformat(text)


def restricted(value: Mapping[str, Any]) -> bool:
    """Whether metadata needs any rule checked at all: it is private, or it ends (the hot reads skip the rest)."""
    return value.get("expires_at") is not None or value.get("visibility") == Visibility.PRIVATE


def expires_at_of(image: ImageLike) -> datetime | None:
    """When the image ends, from a row or from metadata; None for never."""
    if isinstance(image, Image):
        return image.expires_at
    raw = image.get("expires_at")
    if raw is None:
        return None
    return raw if isinstance(raw, datetime) else _parse_moment(str(raw))


def is_private(image: ImageLike) -> bool:
    visibility = image.visibility if isinstance(image, Image) else image.get("visibility")
    return visibility == Visibility.PRIVATE


def owner_of(image: ImageLike) -> uuid.UUID | None:
    if isinstance(image, Image):
        return image.owner_id
    raw = image.get("owner_id")
    return None if raw is None else uuid.UUID(str(raw))


def is_expired(image: ImageLike, now: datetime | None = None) -> bool:
    """Whether the image's moment has come (it answers 404 from then on)."""
    expires_at = expires_at_of(image)
    return expires_at is not None and expires_at <= (now or utc_now())


def visible_to(image: ImageLike, principal: Principal | None, now: datetime | None = None) -> bool:
    """Whether `principal` (None: nobody logged in) may see this image now, scopes aside.

    For pages that show an image: not expired, and unlisted or the principal's own. A key without
    `images:read` still counts as the owner here; `require_readable` refuses it.
    """
    if is_expired(image, now):
        return False
    if not is_private(image):
        return True
    return principal is not None and principal.user_id == owner_of(image)


def not_found(image: ImageLike) -> ImageNotFound:
    """IMAGE_NOT_FOUND exactly as an unknown id gets it (`image_service.get_image`): nothing tells them apart."""
    image_id = image.id if isinstance(image, Image) else image.get("id")
    return ImageNotFound(details={"id": str(image_id)})


def require_not_expired(image: ImageLike, now: datetime | None = None) -> None:
    if is_expired(image, now):
        raise not_found(image)


def require_owner(image: ImageLike, principal: Principal | None) -> None:
    """IMAGE_NOT_FOUND for anyone but the owner (as for an unknown id); INSUFFICIENT_SCOPE for the owner's
    key without `images:read`."""
    if principal is None or principal.user_id != owner_of(image):
        raise not_found(image)
    principal.require(READ_SCOPE)


def require_manager(image: Image, principal: Principal | None, scope: str) -> Principal:
    """The owner, with `scope`, may change or share the image: UNAUTHORIZED without credentials,
    IMAGE_NOT_FOUND for someone else's private image (as for an unknown id), FORBIDDEN for anything
    else that is not theirs, INSUFFICIENT_SCOPE for their key without `scope`."""
    if principal is None:
        if is_private(image):
            raise not_found(image)
        raise Unauthorized("Log in as the image's owner (or use an API key).")
    if principal.user_id != image.owner_id:
        if is_private(image):
            raise not_found(image)
        raise Forbidden("This image belongs to another account." if image.owner_id else "This image has no owner.")
    principal.require(scope)
    return principal


async def require_readable(image: ImageLike, load_principal: PrincipalLoader, now: datetime | None = None) -> bool:
    """Refuse what the caller may not read; True when the image is private (its answers must stay private).

    `load_principal` is only called for a private image: reading credentials costs a database lookup,
    which the public reads (the hot paths) never pay.
    """
    require_not_expired(image, now)
    if not is_private(image):
        return False
    require_owner(image, await load_principal())
    return True


@dataclass(frozen=True)
class Caching:
    """How an answer about one image's file may be cached; `header` None keeps the immutable default."""

    header: str | None
    # Shared caches must not keep it: a redirect to the object store says `private, no-store` too.
    private: bool = False
    # Until the image (or the signed link) ends; caps presigned URLs and the redirect's reuse.
    seconds_left: int | None = None


PUBLIC_FOREVER = Caching(None)


def file_caching(
    image: ImageLike, *, private: bool, link_expires_at: datetime | None = None, now: datetime | None = None
) -> Caching:
    """The caching of a file answer: immutable for an unlisted image that never ends; otherwise kept no
    longer than the image (or the signed link that reached it) lives, and never by shared caches when private."""
    now = now or utc_now()
    ends = [moment for moment in (expires_at_of(image), link_expires_at) if moment is not None]
    seconds_left = max(0, int(min(ends).timestamp() - now.timestamp())) if ends else None
    if link_expires_at is not None:
        keep = min(seconds_left or 0, SHARED_CACHE_SECONDS)
        return Caching(f"private, max-age={keep}", private=True, seconds_left=seconds_left)
    if private:
        return Caching(PRIVATE_NO_STORE, private=True, seconds_left=seconds_left)
    if seconds_left is None:
        return PUBLIC_FOREVER
    return Caching(f"public, max-age={min(seconds_left, MAX_CACHE_SECONDS)}", seconds_left=seconds_left)


async def file_access(
    image: ImageLike,
    shared: SharedFile,
    *,
    share: SharePass | None,
    secret: str,
    load_principal: PrincipalLoader,
) -> Caching:
    """Whether the caller may have this file of the image (by a signed link, by owning it, or because it is
    unlisted), and so how long the answer may be kept; IMAGE_NOT_FOUND, SHARE_LINK_EXPIRED or
    INSUFFICIENT_SCOPE otherwise.

    A link's signature is checked whatever the visibility: an altered link fails alike everywhere.
    """
    now = utc_now()
    require_not_expired(image, now)
    if share is not None:
        link_expires_at = share_links.verify(secret, shared, share, now)
        return file_caching(image, private=True, link_expires_at=link_expires_at, now=now)
    private = await require_readable(image, load_principal, now)
    return file_caching(image, private=private, now=now)
