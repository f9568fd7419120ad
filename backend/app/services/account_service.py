"""Account changes: the password, and the account's end (ADR 0017)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.database import after_commit
from app.errors import InvalidCredentials
from app.models import ApiKey, Image, User
from app.models.base import utc_now
from app.services.passwords import hash_password, verify_password


async def _confirm_password(user: User, password: str) -> None:
    if not await verify_password(password, user.hashed_password):
        raise InvalidCredentials("The password is not correct.")


async def change_password(session: AsyncSession, user: User, current: str, new: str) -> User:
    """Set a new password; every access token issued before (other sessions, other devices) stops working.

    API keys stay: they are revoked one by one, or all with the account.
    """
    await _confirm_password(user, current)
    account = await session.get(User, user.id, with_for_update=True)
    if account is None:  # deleted meanwhile
        raise InvalidCredentials("The password is not correct.")
    account.hashed_password = await hash_password(new)
    account.token_version += 1
    await session.flush()
    return account


async def delete_account(
    session: AsyncSession, user: User, password: str, *, forget_cached: Callable[[str], Awaitable[None]]
) -> None:
    """End the account at once: its keys and tokens stop working, its images answer 404 from now on.

    Its images are then removed, bytes and all, by the expiry sweep (`services.expiry`), which is
    durable across restarts; the account's row, its e-mail and password already erased, goes with the
    last of them. Once that has committed, the images' cached metadata goes (`forget_cached`).
    """
    await _confirm_password(user, password)
    now = utc_now()
    await session.execute(delete(ApiKey).where(ApiKey.user_id == user.id))
    image_ids = [str(image_id) for image_id in await session.scalars(select(Image.id).where(Image.owner_id == user.id))]
    await session.execute(
        update(Image)
        .where(Image.owner_id == user.id)
        .where((Image.expires_at.is_(None)) | (Image.expires_at > now))
        .values(expires_at=now)
    )
    await session.execute(
        update(User)
        .where(User.id == user.id)
        .values(
            is_active=False,
            deleted_at=now,
            # Frees the address for a new account, and keeps nothing personal.
            email=f"deleted-{user.id}@deleted.invalid",
            hashed_password="!",
            token_version=User.token_version + 1,
        )
    )

    async def forget() -> None:
        for image_id in image_ids:
            await forget_cached(image_id)

    after_commit(session, forget)
