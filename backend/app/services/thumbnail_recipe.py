"""What a thumbnail is made with, as its row records it (`images.thumbnail_recipe`).

A thumbnail job writes today's recipe with the thumbnail; `python -m app.admin regenerate` redoes the
thumbnails whose recipe differs, so a change of THUMBNAIL_SIZE, of the renderer, or of the variants
the job pregenerates (VARIANT_PREGENERATE and the encoders, ADR 0015) is applied to every image by
running one command, and running it again only does what is left.
"""

from __future__ import annotations

import hashlib
from typing import Final

from app.config import Settings
from app.services.variant_naming import encoders_of

# Raise when app.media.thumbnails changes the bytes it writes for the same picture and size.
THUMBNAIL_RENDERER_VERSION: Final = 1


def thumbnail_recipe(settings: Settings) -> str:
    """`<THUMBNAIL_SIZE>:<8 hex digits>`: the box, and a hash of the renderer and the pregenerated variants."""
    pregenerated = ",".join(settings.variant_pregenerate)
    # Encoder settings only matter to the job when it makes variants: otherwise they change nothing it makes.
    variants = f"{pregenerated}@{encoders_of(settings).fingerprint}" if pregenerated else ""
    described = f"{THUMBNAIL_RENDERER_VERSION}:{variants}".encode()
    return f"{settings.thumbnail_size}:{hashlib.sha256(described).hexdigest()[:8]}"
