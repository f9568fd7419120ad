"""The `users` table: accounts that own images."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, utc_now


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # Stored lower-cased, so the unique constraint is the case-insensitive comparison (and wins races).
    email: Mapped[str] = mapped_column(String(320), unique=True)
    hashed_password: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    # Carried in every access token as `ver`: changing the password (or deleting the account) raises
    # it, and every token issued before stops working on every process at once.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    # What the account's images take (ADR 0017): kept in the same transactions that add and remove
    # its rows, so a quota is one conditional UPDATE that concurrent uploads cannot overshoot.
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    used_images: Mapped[int] = mapped_column(Integer, default=0)
    # Set when the account is deleted: the row stays (e-mail and password erased) until the expiry
    # sweep has removed its images, then goes itself.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
