"""The `api_keys` table: long-lived credentials for tools (ShareX, scripts, the CLI), stored hashed (ADR 0017)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, utc_now


class ApiKey(Base):
    __tablename__ = "api_keys"
    # "My keys, newest first" for the listing; the lookup of a presented key goes by `public_id`.
    __table_args__ = (Index("ix_api_keys_user_created", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # The key's non-secret part (`chk_<public_id>_<secret>`): finds the row without indexing a secret.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    # SHA-256 hex of the secret part (256 random bits: a fast hash cannot be brute-forced).
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    # Written at most once a minute per key (`api_keys.touch`), so a busy key does not write per request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
