"""The jobs the queue carries: their entrypoint names and priorities (higher runs first)."""

from __future__ import annotations

from enum import IntEnum
from typing import Final

# A thumbnail a user waits for: a fresh upload's, or one whose job was lost and found by a sweep.
THUMBNAIL: Final = "thumbnail"
# Bulk work from the operator commands (app.admin): regenerating thumbnails, scrubbing originals.
REGENERATE: Final = "regenerate"
SCRUB: Final = "scrub"


class Priority(IntEnum):
    """pgqueuer picks the highest priority first, across entrypoints (then the oldest)."""

    BULK = 0
    USER = 100


def dedupe_key(kind: str, subject: str) -> str:
    """One queued or running job per kind and subject: a second enqueue is skipped, not doubled."""
    return f"{kind}:{subject}"
