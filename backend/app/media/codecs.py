"""Codecs beyond Pillow's own. Pillow 13 reads JPEG, PNG, GIF, WebP and AVIF; HEIC/HEIF come from pillow-heif.

Registration is explicit and happens once per process, the first time the pipeline opens an image,
never at import time.
"""

from __future__ import annotations

from functools import cache

import pillow_heif


@cache
def register_codecs() -> None:
    """Make Pillow open HEIC/HEIF (as format "HEIF") without loading what Chitram never shows.

    Embedded thumbnails, depth maps and auxiliary images would be parsed and held for every file;
    the pipeline only ever decodes the top-level images.
    """
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
