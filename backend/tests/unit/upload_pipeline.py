"""Running bytes through upload validation as the service does, with the corpus contract's limits."""

from __future__ import annotations

import io
import json
from collections.abc import Collection
from typing import Any, Final

from app.errors import (
    AnimationTooLarge,
    AppError,
    ImageDimensionsExceeded,
    InvalidFileFormat,
    InvalidImage,
    InvalidRequest,
)
from app.media.formats import ALL_CONTENT_TYPES
from app.media.thumbnail_plan import DecodedFrame
from app.media.validation import Limits, PreparedUpload, decode_upload, prepare_upload
from tests.conftest import CORPUS_DIR, load_corpus

CONTRACT: Final[dict[str, Any]] = json.loads((CORPUS_DIR / "manifest.json").read_text())["contract"]
LIMITS: Final = Limits(
    max_pixels=CONTRACT["max_pixels"],
    max_frames=CONTRACT["max_frames"],
    max_animation_pixels=CONTRACT["max_animation_pixels"],
)
THUMBNAIL_SIDE: Final[int] = CONTRACT["thumbnail_longest_side"]
CORPUS: Final = load_corpus()
ERRORS_BY_CODE: Final[dict[str, type[AppError]]] = {
    error.code: error
    for error in (InvalidRequest, InvalidFileFormat, InvalidImage, ImageDimensionsExceeded, AnimationTooLarge)
}
# Files refused for their size or frames: they must never reach a decoder.
LIMIT_CODES: Final = frozenset({ImageDimensionsExceeded.code, AnimationTooLarge.code})
GENERIC_INVALID_IMAGE: Final = "The file could not be decoded as an image."


def corpus_ids(cases: list[dict[str, Any]]) -> list[str]:
    return [case["file"] for case in cases]


def prepare(
    data: bytes,
    *,
    allowed: Collection[str] = ALL_CONTENT_TYPES,
    declared: str | None = "application/octet-stream",
    limits: Limits = LIMITS,
    strip: bool = True,
) -> PreparedUpload:
    return prepare_upload(
        io.BytesIO(data), allowed_content_types=allowed, declared_content_type=declared, limits=limits, strip=strip
    )


def decode(prepared: PreparedUpload, *, limits: Limits = LIMITS) -> DecodedFrame:
    return decode_upload(prepared, limits=limits, thumbnail_side=THUMBNAIL_SIDE)


def validate(data: bytes, *, limits: Limits = LIMITS, strip: bool = True, **options: Any) -> PreparedUpload:
    """Both stages, as for content seen for the first time; returns what would be stored."""
    prepared = prepare(data, limits=limits, strip=strip, **options)
    decode(prepared, limits=limits)
    return prepared
