"""Signed share links: an image's file (or thumbnail) reachable without credentials until a moment (ADR 0017).

A link is the file's own URL with `exp` (unix seconds) and `sig`, an HMAC-SHA256 over the image id, the
resource, the variant asked for (`w`, `format`) and `exp`, so changing any of them (another image,
another variant, a later expiry) makes the signature wrong. The key is derived from the JWT secret with
a label of its own: a signature is never a valid token, nor a token a signature. Nothing is stored:
a link ends at its `exp`, or sooner with the image.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from urllib.parse import urlencode

from app.errors import ImageNotFound, ShareLinkExpired, ValidationFailed
from app.models import Image, ThumbnailStatus

FILE = "file"
THUMBNAIL = "thumbnail"
_PURPOSE = b"chitram/share-link/v1"
SIGNATURE_LENGTH = 43  # 32 bytes in unpadded base64url


@dataclass(frozen=True)
class SharePass:
    """`exp` and `sig` as a link carries them (checked for shape, not yet for truth)."""

    expires: int
    signature: str


@dataclass(frozen=True)
class SharedFile:
    """What a signed link names: which image, which of its files, and which variant of it."""

    image_id: uuid.UUID
    resource: str = FILE
    width: int | None = None
    image_format: str | None = None

    def query(self, expires: int, signature: str) -> str:
        """The link's query string, parameters in the order a variant link writes them."""
        params: list[tuple[str, str | int]] = []
        if self.width is not None:
            params.append(("w", self.width))
        if self.image_format is not None:
            params.append(("format", self.image_format))
        params += [("exp", expires), ("sig", signature)]
        return urlencode(params)

    def path(self) -> str:
        return f"/api/v1/images/{self.image_id}/{self.resource}"


@lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def signature(secret: str, shared: SharedFile, expires: int) -> str:
    """The signature of `shared` until `expires` (unix seconds)."""
    message = "\n".join(
        (
            shared.resource,
            str(shared.image_id),
            "" if shared.width is None else str(shared.width),
            shared.image_format or "",
            str(expires),
        )
    )
    digest = hmac.new(_key(secret), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(secret: str, shared: SharedFile, expires_at: datetime) -> tuple[str, datetime]:
    """The path and query of a link to `shared` valid until `expires_at` (whole seconds), and that moment."""
    expires = int(expires_at.timestamp())
    url = f"{shared.path()}?{shared.query(expires, signature(secret, shared, expires))}"
    return url, datetime.fromtimestamp(expires, UTC)


def link_lifetime(requested: timedelta, image_expires_at: datetime | None, now: datetime) -> datetime:
    """When a link asked to last `requested` ends: never after the image itself."""
    expires_at = now + requested
    return expires_at if image_expires_at is None else min(expires_at, image_expires_at)


def verify(secret: str, shared: SharedFile, share: SharePass, now: datetime) -> datetime:
    """When the link ends, if its signature is right and it has not ended; IMAGE_NOT_FOUND for a wrong
    signature (as for an unknown id), SHARE_LINK_EXPIRED for a right one past its moment."""
    expected = signature(secret, shared, share.expires)
    if not hmac.compare_digest(expected.encode(), share.signature.encode("ascii", "replace")):
        raise ImageNotFound(details={"id": str(shared.image_id)})  # as for an unknown id
    expires_at = datetime.fromtimestamp(share.expires, UTC)
    if expires_at <= now:
        raise ShareLinkExpired(details={"expired_at": expires_at.isoformat()})
    return expires_at


@dataclass(frozen=True)
class Shared:
    """The signed links (path and query) to an image's file and thumbnail, and when they end."""

    file: str
    thumbnail: str | None
    expires_at: datetime


def share_image(
    secret: str,
    image: Image,
    *,
    lifetime: timedelta,
    width: int | None,
    image_format: str | None,
    widths: Sequence[int],
    now: datetime,
) -> Shared:
    """Signed links to `image`'s file (the variant asked for) and its ready thumbnail, for `lifetime`."""
    if width is not None and width not in widths:
        listed = ", ".join(str(each) for each in widths)
        message = f"w must be one of {listed}."
        raise ValidationFailed.of_field("w", message)
    expires_at = link_lifetime(lifetime, image.expires_at, now)
    file_link, ends = sign(secret, SharedFile(image.id, FILE, width, image_format), expires_at)
    thumbnail_link = None
    if image.thumbnail_status == ThumbnailStatus.READY:
        thumbnail_link, _ = sign(secret, SharedFile(image.id, THUMBNAIL), expires_at)
    return Shared(file_link, thumbnail_link, ends)
