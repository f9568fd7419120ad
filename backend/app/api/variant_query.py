"""`?w=&format=` on a file link: which variant a request asks for, checked against what is served.

Only the listed widths and formats exist, each asked for at most once, so a query can never make the
server render a size or format nobody configured (ADR 0015). `format=auto` reads the `Accept` header,
and its answer varies by that header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from app.errors import InvalidVariant
from app.media.variants import REQUESTABLE_FORMATS, VariantRecipe, auto_mode

PARAMETERS = ("w", "format")
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


def parse_variant_query(request: Request, widths: Sequence[int]) -> VariantQuery | None:
    """The variant asked for, None for the original (no query), or INVALID_VARIANT."""
    return variant_query_of(request.scope["query_string"], request.headers.get("accept"), tuple(widths))


def variant_query_of(query_string: bytes, accept: str | None, widths: tuple[int, ...]) -> VariantQuery | None:
    """`parse_variant_query` from the raw query and Accept header (the near-cache middleware has no Request)."""
    asked = _asked(query_string, widths)
    if asked is None:
        return None
    width, image_format = asked
    if image_format == "auto":
        return VariantQuery(width, auto_mode(accepted_formats(accept)), negotiated=True)
    return VariantQuery(width, image_format or "source", negotiated=False)


# Valid queries are few (widths x formats, in a few spellings), and a warm variant is answered from
# the near copies in microseconds, where parsing again would cost as much again. Errors are not kept.
@lru_cache(maxsize=512)
def _asked(query_string: bytes, widths: tuple[int, ...]) -> tuple[int | None, str | None] | None:
    # Parsed as Starlette parses `request.query_params`.
    items = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    if not items:
        return None
    details = {"parameters": list(PARAMETERS), "widths": list(widths), "formats": list(REQUESTABLE_FORMATS)}
    names = [name for name, _ in items]
    unknown = sorted(set(names) - set(PARAMETERS))
    if unknown:
        raise InvalidVariant(f"Unknown parameter {unknown[0]!r}: a file link takes only w and format.", details=details)
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
    return width, image_format


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
