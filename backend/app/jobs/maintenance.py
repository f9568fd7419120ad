"""Bulk jobs the operator commands queue at low priority: regenerating thumbnails, scrubbing originals."""

from __future__ import annotations

import uuid

from app.jobs.resources import JobResources


async def regenerate(resources: JobResources, image_id: uuid.UUID) -> None:
    """Make this image's thumbnail (and pregenerated variants) again with today's settings."""
    raise NotImplementedError


async def scrub(resources: JobResources, checksum: str) -> None:
    """Re-read the original with this checksum, and record whether it is missing or altered."""
    raise NotImplementedError
