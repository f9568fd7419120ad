"""The `integrity_findings` table: stored originals that `app.admin scrub` found missing or altered."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, utc_now


class IntegrityProblem(StrEnum):
    MISSING = "missing"  # the store does not hold the key
    MISMATCH = "mismatch"  # the stored bytes no longer hash to the content's checksum


class IntegrityFinding(Base):
    """One row per stored original with a problem, as the last scrub of its content found it.

    A scrub that finds the object whole again deletes its row, so the table is the list of what is
    wrong now (the metrics of a later issue count it). Keyed by content and key: images stored before
    content addressing (ADR 0014) may hold the same bytes under keys of their own.
    """

    __tablename__ = "integrity_findings"

    checksum: Mapped[str] = mapped_column(String(64), primary_key=True)  # what the rows say the bytes are
    storage_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    problem: Mapped[str] = mapped_column(String(16))
    # SHA-256 of the bytes the store holds now; null when they are missing.
    actual_checksum: Mapped[str | None] = mapped_column(String(64))
    # When a scrub first found this problem (a later scrub that finds it again keeps the date).
    found_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
