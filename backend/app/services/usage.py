"""What each account's images take, and its quota (ADR 0017).

`users.used_bytes` and `used_images` change in the same transaction as the rows they count. An upload
reserves its room with one conditional UPDATE: on PostgreSQL the row lock makes concurrent uploads of
one account take turns, and each re-reads the counters the previous one left (on SQLite, writers take
turns anyway), so ten parallel uploads can never together pass the quota.
"""

from __future__ import annotations

import uuid

from sqlalchemy import and_, bindparam, literal, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.config import Settings
from app.errors import QuotaExceeded
from app.models import User
from app.schemas.account import UsageRead


def usage_of(user: User, settings: Settings) -> UsageRead:
    """What the account's images take, and the quota, as the API and the Account page show them."""
    return UsageRead(
        used_bytes=user.used_bytes,
        used_images=user.used_images,
        quota_bytes=settings.user_quota_bytes,
        quota_images=settings.user_quota_images,
    )


def quota_error(user_bytes: int, user_images: int, file_size: int, settings: Settings) -> QuotaExceeded:
    over_images = settings.user_quota_images is not None and user_images + 1 > settings.user_quota_images
    what = "images" if over_images else "bytes"
    return QuotaExceeded(
        f"This upload would pass the account's quota of {what}; delete some images first.",
        details={
            "quota_bytes": settings.user_quota_bytes,
            "quota_images": settings.user_quota_images,
            "used_bytes": user_bytes,
            "used_images": user_images,
            "file_size": file_size,
        },
    )


def check_room(user: User, settings: Settings, file_size: int = 0) -> None:
    """QUOTA_EXCEEDED before any work when the account is full already (the reservation decides in the end)."""
    full_images = settings.user_quota_images is not None and user.used_images + 1 > settings.user_quota_images
    full_bytes = settings.user_quota_bytes is not None and user.used_bytes + file_size > settings.user_quota_bytes
    if full_images or full_bytes:
        raise quota_error(user.used_bytes, user.used_images, file_size, settings)


async def reserve(
    connection: AsyncConnection,
    owner_id: uuid.UUID,
    file_size: int,
    settings: Settings,
    token_version: int | None = None,
) -> bool:
    """Count one more image of `file_size` bytes against an active account, if its quota allows (and, given a
    login's `token_version`, if that is still the account's).

    False when nothing was counted: the account is gone or disabled, its token ended, or the quota would
    be passed.
    """
    result = await connection.execute(
        RESERVE, {"owner_id": owner_id, "file_size": file_size, **reservation_parameters(settings, token_version)}
    )
    return result.rowcount == 1


def reservation_parameters(settings: Settings, token_version: int | None) -> dict[str, int | None]:
    """What `RESERVE` needs beside `owner_id` and `file_size`."""
    return {
        "quota_bytes": settings.user_quota_bytes,
        "quota_images": settings.user_quota_images,
        "presented_version": token_version,
    }


async def release(session: AsyncSession | AsyncConnection, owner_id: uuid.UUID, file_size: int) -> None:
    """Stop counting one image of the account (in the transaction that deletes its row)."""
    await session.execute(_RELEASE, {"owner_id": owner_id, "file_size": file_size})


_QUOTA_BYTES = bindparam("quota_bytes", type_=User.used_bytes.type)
_QUOTA_IMAGES = bindparam("quota_images", type_=User.used_images.type)
_FILE_SIZE = bindparam("file_size", type_=User.used_bytes.type)
_TOKEN_VERSION = bindparam("presented_version", type_=User.token_version.type)
# Built once (building a statement costs about as much as running it). Uploads on PostgreSQL run it as a
# CTE of their INSERT (`uploads._INSERT_COUNTED`).
RESERVE = (
    update(User)
    .where(
        and_(
            User.id == bindparam("owner_id"),
            User.is_active.is_(True),
            or_(_TOKEN_VERSION.is_(None), User.token_version == _TOKEN_VERSION),
            or_(_QUOTA_BYTES.is_(None), User.used_bytes + _FILE_SIZE <= _QUOTA_BYTES),
            or_(_QUOTA_IMAGES.is_(None), User.used_images + literal(1) <= _QUOTA_IMAGES),
        )
    )
    .values(used_bytes=User.used_bytes + _FILE_SIZE, used_images=User.used_images + 1)
)
_RELEASE = (
    update(User)
    .where(User.id == bindparam("owner_id"))
    .values(used_bytes=User.used_bytes - _FILE_SIZE, used_images=User.used_images - 1)
)
