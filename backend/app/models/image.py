"""The `images` table: one row per stored original."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, utc_now


class Image(Base):
    __tablename__ = "images"
    # Serves "my images, newest first" as an index-only keyset scan.
    __table_args__ = (Index("ix_images_owner_created", "owner_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # The sanitised name the uploader gave; shown and used in Content-Disposition, never as a key.
    filename: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(255), unique=True)
    # The type detected from the bytes, never the client's claim.
    content_type: Mapped[str] = mapped_column(String(64))
    file_size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(64))  # SHA-256 hex of the stored bytes
    upload_ip: Mapped[str | None] = mapped_column(String(45))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, index=True)
    # NULL for anonymous uploads; deleting an account deletes its images.
    owner_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    # SHA-256 of the anonymous upload's delete token: the token itself is shown once and never stored.
    delete_token_hash: Mapped[str | None] = mapped_column(String(64))
