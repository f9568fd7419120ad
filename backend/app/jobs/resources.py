"""What a job needs, built once per worker process (or taken from the API process that runs jobs)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.services.storage import StorageBackend
from app.services.thumbnail_jobs import ThumbnailJobs
from app.services.variants import VariantService


@dataclass(frozen=True)
class JobResources:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    storage: StorageBackend
    thumbnails: ThumbnailJobs
    variants: VariantService
