"""The `images` table: one row per stored original."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, utc_now


class ThumbnailStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class Visibility(StrEnum):
    UNLISTED = "unlisted"
    PRIVATE = "private"


class Image(Base):
    __tablename__ = "images"
    # Serves "my images, newest first" as an index-only keyset scan.
    __table_args__ = (
        Index("ix_images_owner_created", "owner_id", "created_at", "id"),
        # Originals are shared by content (ADR 0014): who else names this object, a ready thumbnail first.
        Index("ix_images_storage_key_thumbnail", "storage_key", "thumbnail_status"),
        # Who else names this thumbnail, when an image goes.
        Index("ix_images_thumbnail_key", "thumbnail_key"),
        # Whether any image still has a content, when one goes (its variants go with the last).
        Index("ix_images_checksum", "checksum"),
        # The sweeper's query: pending thumbnails whose lease has run out.
        Index("ix_images_thumbnail_pending", "thumbnail_status", "thumbnail_lease_until"),
        # The expiry sweep's query: images whose moment has passed.
        Index("ix_images_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # The sanitised name the uploader gave; shown and used in Content-Disposition, never as a key.
    filename: Mapped[str] = mapped_column(String(255))
    # The stored original: shared by every image with the same content (`originals/<sha256>.<ext>`);
    # images uploaded before content addressing keep `<id>.<ext>` until `app.admin strip-metadata`.
    storage_key: Mapped[str] = mapped_column(String(255))
    # The type detected from the bytes, never the client's claim.
    content_type: Mapped[str] = mapped_column(String(64))
    file_size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(64))  # SHA-256 hex of the stored bytes
    # Whether the stored original was stripped of metadata (ADR 0013); false for older uploads until
    # `python -m app.admin strip-metadata` has rewritten them.
    metadata_stripped: Mapped[bool] = mapped_column(Boolean, default=True)
    upload_ip: Mapped[str | None] = mapped_column(String(45))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, index=True)
    # NULL for anonymous uploads; deleting an account deletes its images.
    owner_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    # SHA-256 of the anonymous upload's delete token: the token itself is shown once and never stored.
    delete_token_hash: Mapped[str | None] = mapped_column(String(64))
    # `unlisted` (anyone with the link) or `private` (the owner, and signed links it hands out).
    visibility: Mapped[str] = mapped_column(String(16), default=Visibility.UNLISTED)
    # From this moment the image answers 404; the expiry sweep then removes its row and objects.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # The thumbnail job's whole state lives in the row, so any process can resume it (ADR 0008).
    thumbnail_status: Mapped[str] = mapped_column(String(16), default=ThumbnailStatus.PENDING)
    thumbnail_key: Mapped[str | None] = mapped_column(String(255))
    thumbnail_content_type: Mapped[str | None] = mapped_column(String(64))
    thumbnail_size: Mapped[int | None] = mapped_column(Integer)
    thumbnail_checksum: Mapped[str | None] = mapped_column(String(64))
    thumbnail_attempts: Mapped[int] = mapped_column(Integer, default=0)
    thumbnail_error: Mapped[str | None] = mapped_column(String(255))
    # ThumbHash of the picture (base64, ~28 characters), computed with the thumbnail (ADR 0015).
    placeholder: Mapped[str | None] = mapped_column(String(64))
    # What the thumbnail (and the content's pregenerated variants) was made with: THUMBNAIL_SIZE and a
    # fingerprint of the renderer (`thumbnail_recipe`). `app.admin regenerate` redoes those made otherwise.
    thumbnail_recipe: Mapped[str | None] = mapped_column(String(64))
    # Claimed by a worker until then (or, after a failure, not to be retried before then).
    thumbnail_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
