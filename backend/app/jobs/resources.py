"""What a job needs, built once per worker process (or taken from the API process that runs jobs)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.services.cache import MetadataCache
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
    # Told when a job changes what an image's cached metadata says (a regenerated thumbnail's placeholder);
    # None without Redis, or where the process has no cache of its own.
    cache: MetadataCache | None = None
