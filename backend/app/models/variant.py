"""The `variants` table: one row per variant of a content, claimed while it renders, then ready (ADR 0015)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, utc_now


class VariantStatus(StrEnum):
    RENDERING = "rendering"
    READY = "ready"
    FAILED = "failed"


class Variant(Base):
    """A variant belongs to a content (the SHA-256 of an original), not to an image: every image with
    that content shares it, and it goes when the last of them does."""

    __tablename__ = "variants"
    # No index but the key: every lookup names (content, name), and a content's rows go together.

    source_checksum: Mapped[str] = mapped_column(String(64), primary_key=True)
    # `<width|full>-<mode>-<encoder fingerprint>` (`VariantRecipe.name`).
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=VariantStatus.RENDERING)
    # Who renders it, until when: a renderer that dies leaves a claim that runs out.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set once ready: `variants/<sha[:2]>/<sha>/<name>.<ext>`.
    storage_key: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
