"""The application factory: `create_app(settings)` wires engine, storage, routers and handlers."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI

from app.api import auth, health, images, users
from app.api.errors import install_error_handlers
from app.config import Settings, get_settings
from app.database import create_engine, create_sessionmaker
from app.services.storage import build_storage

logger = logging.getLogger(__name__)

DESCRIPTION = """
Chitram is a self-hosted image host. Upload a JPEG or PNG, get its metadata and a direct link.

Every error has one shape: `{"detail": {"code": "...", "message": "...", "details": {...}}}`;
`code` is stable and listed with each endpoint's responses.
"""


SESSION_COOKIE_NAME = "chitram_session"


def _jwt_secret(settings: Settings) -> str:
    if settings.jwt_secret_key:
        return settings.jwt_secret_key
    # Development without a configured secret: a random one per process, so no guessable default
    # ever signs a token. Production refuses to start without one (see Settings).
    logger.warning("JWT_SECRET_KEY is not set: using a random secret; tokens end when the process does")
    return secrets.token_urlsafe(48)


def create_app(settings: Settings) -> FastAPI:
    """Build the ASGI app for these settings; nothing is connected until start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        storage = build_storage(settings)
        try:
            await storage.startup()
            app.state.engine = engine
            app.state.sessionmaker = create_sessionmaker(engine)
            app.state.storage = storage
            logger.info("chitram started: env=%s storage=%s", settings.app_env, storage.name)
            yield
        finally:
            await storage.close()
            await engine.dispose()

    app = FastAPI(
        title="Chitram",
        version=version("chitram"),
        description=DESCRIPTION,
        debug=False,  # our own handler decides what a 500 shows, by settings.debug
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.jwt_secret = _jwt_secret(settings)
    app.state.session_cookie_name = SESSION_COOKIE_NAME
    install_error_handlers(app, debug=settings.debug)
    app.include_router(auth.router)
    app.include_router(images.router)
    app.include_router(users.router)
    app.include_router(health.router)
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory app.main:app_factory`: settings from the environment."""
    return create_app(get_settings())
