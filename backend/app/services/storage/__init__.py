"""Where image bytes live: a folder on disk or an S3-compatible bucket, behind one interface."""

from __future__ import annotations

from app.config import Settings
from app.services.storage.base import WHOLE_READ_LIMIT, StorageBackend, StoredObjectMissing
from app.services.storage.local import LocalStorage
from app.services.storage.s3 import S3Storage

__all__ = ["WHOLE_READ_LIMIT", "LocalStorage", "S3Storage", "StorageBackend", "StoredObjectMissing", "build_storage"]


def build_storage(settings: Settings) -> StorageBackend:
    """The backend named by `settings.storage_backend`, not yet started."""
    if settings.storage_backend == "local":
        return LocalStorage(settings.local_storage_path)
    return S3Storage(
        endpoint=settings.minio_endpoint,
        access_key=settings.minio_access_key,
        secret_key=settings.minio_secret_key,
        bucket=settings.minio_bucket,
        secure=settings.minio_secure,
        region=settings.minio_region,
        startup_timeout_seconds=settings.storage_startup_timeout_seconds,
    )
