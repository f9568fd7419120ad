"""Opaque keyset-pagination cursors: (created_at, id) of the last item on a page."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime


class InvalidCursor(ValueError):
    """The cursor was not made by `encode_cursor`."""


def encode_cursor(created_at: datetime, item_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{item_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, item_id = raw.partition("|")
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("cursor time has no zone")
        # Normalised here: a crafted time near datetime's limits overflows in conversion, not in SQL.
        return created_at.astimezone(UTC), uuid.UUID(item_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise InvalidCursor(cursor) from None
