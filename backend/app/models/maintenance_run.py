"""The `maintenance_runs` table: where a resumable operator command stands (`app.admin scrub`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, utc_now


class MaintenanceRun(Base):
    """A run in progress: saved after each finished window, deleted when the run completes."""

    __tablename__ = "maintenance_runs"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)  # the command, e.g. `scrub`
    # The last subject of the last finished window (a checksum for scrub); the next window starts after it.
    cursor: Mapped[str | None] = mapped_column(String(255))
    done: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
