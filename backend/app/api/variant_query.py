"""`?w=&format=` on a file link: which variant a request asks for, checked against what is served.

Only the listed widths and formats exist, each asked for at most once, so a query can never make the
server render a size or format nobody configured (ADR 0015). `format=auto` reads the `Accept` header,
and its answer varies by that header. A signed share link (ADR 0017) adds `exp` and `sig`, always as a
pair; whether they are true is `share_links`' to say.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from app.errors import InvalidVariant
from app.media.variants import REQUESTABLE_FORMATS, VariantRecipe, auto_mode
from app.services.share_links import SIGNATURE_LENGTH, SharedFile, SharePass

PARAMETERS = ("w", "format")
SHARE_PARAMETERS = ("exp", "sig")
_ALL_PARAMETERS = (*PARAMETERS, *SHARE_PARAMETERS)
_SIGNATURE_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# Negotiated formats: an explicit `image/avif` or `image/webp` in Accept (never a wildcard) with q > 0.
_NEGOTIATED = {"image/avif": "avif", "image/webp": "webp"}


@dataclass(frozen=True)
class VariantQuery:
    width: int | None
    mode: str
    negotiated: bool  # the answer depends on Accept (`Vary: Accept`)

    def recipe_for(self, metadata: dict[str, Any]) -> VariantRecipe:
        """The recipe for this image: a width at or past its size is its full size (never upscaled)."""
        return VariantRecipe.fitted(self.width, self.mode, (int(metadata["width"]), int(metadata["height"])))


@dataclass(frozen=True)
class FileQuery:
    """A file link's whole query: the variant (None for the original) and a share link's pass, if any."""

    variant: VariantQuery | None
    width: int | None = None
    image_format: str | None = None  # as asked (`auto` included): what a share link signs
    share: SharePass | None = None

    def shared_file(self, image_id: uuid.UUID | str) -> SharedFile:
        """What a share link with this query would have signed for `image_id`'s file."""
        return SharedFile(uuid.UUID(str(image_id)), width=self.width, image_format=self.image_format)


PLAIN = FileQuery(None)


def parse_file_query(request: Request, widths: Sequence[int]) -> FileQuery:
    """The variant and share pass asked for (`PLAIN` without a query), or INVALID_VARIANT."""
    return file_query_of(request.scope["query_string"], request.headers.get("accept"), tuple(widths))


def parse_variant_query(request: Request, widths: Sequence[int]) -> VariantQuery | None:
    """The variant asked for, None for the original, or INVALID_VARIANT (a share link's pair is allowed)."""
    return parse_file_query(request, widths).variant


def file_query_of(query_string: bytes, accept: str | None, widths: tuple[int, ...]) -> FileQuery:
    """`parse_file_query` from the raw query and Accept header (the near-cache middleware has no Request)."""
    asked = _asked(query_string, widths)
    if asked is None:
        return PLAIN
    width, image_format, share = asked
    if image_format == "auto":
        variant: VariantQuery | None = VariantQuery(width, auto_mode(accepted_formats(accept)), negotiated=True)
    elif width is None and image_format is None:
        variant = None  # a share link to the original
    else:
        variant = VariantQuery(width, image_format or "source", negotiated=False)
    return FileQuery(variant, width, image_format, share)


# Valid queries are few (widths x formats, in a few spellings), and a warm variant is answered from
# the near copies in microseconds, where parsing again would cost as much again. Errors are not kept.
# Share links (each query its own) pass through too; they are few next to the direct links' reads.
@lru_cache(maxsize=512)
def _asked(query_string: bytes, widths: tuple[int, ...]) -> tuple[int | None, str | None, SharePass | None] | None:
    # Parsed as Starlette parses `request.query_params`.
    items = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    if not items:
        return None
    details = {"parameters": list(PARAMETERS), "widths": list(widths), "formats": list(REQUESTABLE_FORMATS)}
    names = [name for name, _ in items]
    unknown = sorted(set(names) - set(_ALL_PARAMETERS))
    if unknown:
        raise InvalidVariant(
            f"Unknown parameter {unknown[0]!r}: a file link takes only w and format (and a share link's exp and sig).",
            details=details,
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidVariant(f"{repeated[0]!r} may be given once.", details=details)
    values = dict(items)
    width = None
    if "w" in values:
        raw = values["w"]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 5 and int(raw) in widths):
            listed = ", ".join(str(width) for width in widths)
            raise InvalidVariant(f"w must be one of {listed}.", details=details)
        width = int(raw)
    image_format = values.get("format")
    if image_format is not None and image_format not in REQUESTABLE_FORMATS:
        raise InvalidVariant(f"format must be one of {', '.join(REQUESTABLE_FORMATS)}.", details=details)
    return width, image_format, share_pass_of(values, details)


def share_pass_of(values: dict[str, str], details: dict[str, Any] | None = None) -> SharePass | None:
    """A share link's `exp` and `sig` (both or neither; of the right shape), or INVALID_VARIANT."""
    expires, signature = values.get("exp"), values.get("sig")
    if expires is None and signature is None:
        return None
    if expires is None or signature is None:
        raise InvalidVariant("exp and sig come together, as a share link writes them.", details=details)
    # Ten digits reach the year 2286; more could not be a moment a link was signed for.
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 10):
        raise InvalidVariant("exp is a moment in unix seconds.", details=details)
    if len(signature) != SIGNATURE_LENGTH or not _SIGNATURE_CHARACTERS.issuperset(signature):
        raise InvalidVariant("sig is not a share link's signature.", details=details)
    return SharePass(int(expires), signature)


@lru_cache(maxsize=256)  # browsers send a handful of distinct Accept headers
def accepted_formats(accept: str | None) -> frozenset[str]:
    """Which of AVIF and WebP an Accept header names explicitly with a non-zero quality."""
    accepted: set[str] = set()
    for media_range in (accept or "").split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        name = _NEGOTIATED.get(media_type.lower())
        if name is not None and _quality(parameters) > 0:
            accepted.add(name)
    return frozenset(accepted)


def _quality(parameters: list[str]) -> float:
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0
