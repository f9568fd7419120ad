"""What a test needs to look behind the API: the bucket's objects and the table's rows."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from minio import Minio
from sqlalchemy import func, select

from app.config import Settings
from app.models import Image
from app.services.content_store import original_key


def original_key_of(created: dict[str, Any]) -> str:
    """Where an uploaded image's original is stored: under its content (ADR 0014)."""
    return original_key(created["checksum"], created["content_type"])


def bucket_keys(settings: Settings) -> set[str]:
    """Every object key in the test's bucket, read with a separate real S3 client."""
    client = Minio(
        settings.minio_endpoint,
        access_key=settings.minio_access_key,
        secret_key=settings.minio_secret_key,
        secure=settings.minio_secure,
    )
    return {item.object_name for item in client.list_objects(settings.minio_bucket, recursive=True)}


async def image_row_count(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        count: int = await session.scalar(select(func.count()).select_from(Image))
        return count
