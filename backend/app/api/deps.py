"""Dependency aliases, so handlers read like the sentence they implement."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.database import get_session
from app.models import Image
from app.services import image_service
from app.services.storage import StorageBackend


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _storage(request: Request) -> StorageBackend:
    storage: StorageBackend = request.app.state.storage
    return storage


# scope="function": commit (or roll back) before the response is sent, so a 2xx means committed.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(_settings)]
StorageDep = Annotated[StorageBackend, Depends(_storage)]


async def _image(image_id: str, session: SessionDep) -> Image:
    return await image_service.get_image(session, image_id)


ImageDep = Annotated[Image, Depends(_image)]


def client_ip(request: Request) -> str | None:
    """The peer address (already resolved from trusted proxy headers by the server)."""
    return request.client.host if request.client else None
