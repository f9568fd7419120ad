"""Accounts: registration, login and resolving a token to its user."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.database import read_session
from app.errors import EmailExists, InvalidCredentials, Unauthorized
from app.models import User
from app.schemas.user import AuthResponse, UserRead
from app.services.passwords import hash_password, verify_password
from app.services.tokens import create_access_token


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def register_user(session: AsyncSession, email: str, password: str) -> User:
    """Create an account; EMAIL_EXISTS when the address is taken (also when two sign-ups race)."""
    normalised = normalise_email(email)
    if await session.scalar(select(User.id).where(User.email == normalised)) is not None:
        raise EmailExists()
    user = User(email=normalised, hashed_password=await hash_password(password), is_active=True)
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        # The other registration committed between our check and our insert.
        raise EmailExists() from None
    return user


async def authenticate(session: AsyncSession, email: str, password: str) -> User:
    """The user with these credentials; INVALID_CREDENTIALS for unknown email and wrong password alike."""
    normalised = normalise_email(email)
    # No stored address holds a NUL (registration validates them), and PostgreSQL text cannot even
    # be compared with one: such an address names no account, like any other unknown one.
    user = None if "\x00" in normalised else await session.scalar(select(User).where(User.email == normalised))
    valid = await verify_password(password, user.hashed_password if user else None)
    if user is None or not valid or not user.is_active:
        raise InvalidCredentials()
    return user


async def load_token_user(sessionmaker: async_sessionmaker[AsyncSession], user_id: uuid.UUID, version: int) -> User:
    """The active user a token names, if the token is of the account's current version; read in a short session.

    Not in the request's session: that would open its transaction (and hold a pooled connection)
    before an upload's body has even arrived. The returned object is detached, its columns loaded.
    """
    async with read_session(sessionmaker) as session:
        user = await get_active_user(session, user_id)
    if user.token_version != version:
        raise Unauthorized("This session has ended (the password was changed); log in again.")
    return user


async def get_active_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The active user a valid token names; UNAUTHORIZED when the account is gone or disabled."""
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The account for this token no longer exists.")
    return user


def login_answer(user: User, *, secret: str, expire_minutes: int) -> AuthResponse:
    """The account and a fresh access token of its current version (login, registration, password change)."""
    token, expires_at = create_access_token(
        user.id, version=user.token_version, secret=secret, expire_minutes=expire_minutes
    )
    return AuthResponse(user=UserRead.model_validate(user), access_token=token, expires_at=expires_at)
