"""Images as releases before content addressing stored them: `<id>.<ext>` keys, unstripped bytes.

Rows are written with the columns of revision 0003 only, so the same helper seeds a database at 0003
(to migrate) or at head (where the migration gave them `metadata_stripped` false).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from app.media.formats import EXTENSIONS
from app.models.base import UTCDateTime

_COLUMNS_0003 = (
    ("id", sa.Uuid()),
    ("filename", sa.String()),
    ("storage_key", sa.String()),
    ("content_type", sa.String()),
    ("file_size", sa.BigInteger()),
    ("width", sa.Integer()),
    ("height", sa.Integer()),
    ("checksum", sa.String()),
    ("upload_ip", sa.String()),
    ("created_at", UTCDateTime()),
    ("owner_id", sa.Uuid()),
    ("delete_token_hash", sa.String()),
    ("thumbnail_status", sa.String()),
    ("thumbnail_key", sa.String()),
    ("thumbnail_content_type", sa.String()),
    ("thumbnail_size", sa.Integer()),
    ("thumbnail_checksum", sa.String()),
    ("thumbnail_attempts", sa.Integer()),
    ("thumbnail_error", sa.String()),
    ("thumbnail_lease_until", UTCDateTime()),
)
IMAGES_0003 = sa.table("images", *(sa.column(name, kind) for name, kind in _COLUMNS_0003))
# At head, such rows also say that their original was not stripped (and, as every old row, that it is unlisted).
IMAGES_AT_HEAD = sa.table(
    "images",
    *(sa.column(name, kind) for name, kind in _COLUMNS_0003),
    sa.column("metadata_stripped", sa.Boolean()),
    sa.column("visibility", sa.String()),
)


@dataclass(frozen=True)
class LegacyImage:
    id: uuid.UUID
    body: bytes
    content_type: str
    width: int
    height: int
    thumbnail: bytes

    @property
    def storage_key(self) -> str:
        return f"{self.id}{EXTENSIONS[self.content_type]}"

    @property
    def thumbnail_key(self) -> str:
        return f"thumbnails/{self.id}.jpg"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def legacy_image(body: bytes, content_type: str, size: tuple[int, int], thumbnail: bytes) -> LegacyImage:
    return LegacyImage(uuid.uuid4(), body, content_type, size[0], size[1], thumbnail)


async def insert_legacy_rows(database_url: str, images: list[LegacyImage], *, at_head: bool = False) -> None:
    """The rows an old release wrote for these anonymous uploads, thumbnails ready, in upload order.

    `at_head`: the database is at the newest revision, where such rows say they are not stripped.
    """
    engine = create_async_engine(database_url)
    started = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    try:
        async with engine.begin() as connection:
            for number, image in enumerate(images):
                at_head_extra = {"metadata_stripped": False, "visibility": "unlisted"}
                table, extra = (IMAGES_AT_HEAD, at_head_extra) if at_head else (IMAGES_0003, {})
                await connection.execute(
                    table.insert().values(
                        **extra,
                        id=image.id,
                        filename=f"legacy-{number}{EXTENSIONS[image.content_type]}",
                        storage_key=image.storage_key,
                        content_type=image.content_type,
                        file_size=len(image.body),
                        width=image.width,
                        height=image.height,
                        checksum=image.checksum,
                        upload_ip="203.0.113.9",
                        created_at=started + timedelta(seconds=number),
                        owner_id=None,
                        delete_token_hash=hashlib.sha256(b"legacy-token").hexdigest(),
                        thumbnail_status="ready",
                        thumbnail_key=image.thumbnail_key,
                        thumbnail_content_type="image/jpeg",
                        thumbnail_size=len(image.thumbnail),
                        thumbnail_checksum=hashlib.sha256(image.thumbnail).hexdigest(),
                        thumbnail_attempts=1,
                        thumbnail_error=None,
                        thumbnail_lease_until=None,
                    )
                )
    finally:
        await engine.dispose()


def write_legacy_objects(root: Path, images: list[LegacyImage]) -> None:
    """Their files in local storage, where the old release put them."""
    (root / "thumbnails").mkdir(parents=True, exist_ok=True)
    for image in images:
        (root / image.storage_key).write_bytes(image.body)
        (root / image.thumbnail_key).write_bytes(image.thumbnail)
