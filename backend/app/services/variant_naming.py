"""What a variant is called, where it is stored, and how a ready one is described (ADR 0015).

Kept apart from `variants` (which finds and renders them) so that anything naming variants, such as
pregeneration settings or the benchmarks, needs no renderer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import PurePosixPath

from app.config import Settings
from app.media.variants import Encoders, VariantRecipe
from app.services.delivery import StoredFile


def variant_key(checksum: str, name: str, extension: str) -> str:
    """Where a variant is stored: beside the other variants of its content, apart from originals."""
    return f"variants/{checksum[:2]}/{checksum}/{name}{extension}"


def encoders_of(settings: Settings) -> Encoders:
    return Encoders(
        jpeg_quality=settings.variant_jpeg_quality,
        webp_quality=settings.variant_webp_quality,
        webp_method=settings.variant_webp_method,
        avif_quality=settings.variant_avif_quality,
        avif_speed=settings.variant_avif_speed,
        png_compress_level=settings.variant_png_compress_level,
    )


def pregenerated_recipes(settings: Settings, stored_size: tuple[int, int]) -> list[VariantRecipe]:
    """VARIANT_PREGENERATE as recipes for a picture of this size (`300:webp` -> 300 px WebP; `full:avif`
    -> full-size AVIF), fitted as a request's are, so that a request finds what was made."""
    recipes = []
    for item in settings.variant_pregenerate:
        width, _, image_format = item.partition(":")
        recipe = VariantRecipe.fitted(None if width == "full" else int(width), image_format, stored_size)
        if recipe not in recipes:  # `full` and a width past the picture's size are one variant
            recipes.append(recipe)
    return recipes


@dataclass(frozen=True)
class ReadyVariant:
    """A stored variant as its row describes it (without the file name, which is each image's own)."""

    key: str
    size: int
    checksum: str
    content_type: str
    created_at: datetime

    def as_file(self, image_filename: str, recipe: VariantRecipe) -> StoredFile:
        """How to serve it for an image of that name (memoised: warm variants are served in microseconds)."""
        return _as_file(self, image_filename, recipe.width)


@lru_cache(maxsize=4096)
def _as_file(ready: ReadyVariant, image_filename: str, width: int | None) -> StoredFile:
    suffix = PurePosixPath(ready.key).suffix
    label = f"-{width}w" if width else ""
    return StoredFile(
        key=ready.key,
        size=ready.size,
        checksum=ready.checksum,
        content_type=ready.content_type,
        filename=f"{PurePosixPath(image_filename).stem}{label}{suffix}",
        modified=ready.created_at,
    )
