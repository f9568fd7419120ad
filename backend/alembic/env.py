"""Alembic environment: the schema's only source, on SQLite and PostgreSQL alike.

The URL comes from `sqlalchemy.url` when a caller (the test suite) sets it, else from the app's
settings, so `alembic upgrade head` migrates whatever `DATABASE_URL` the service would use.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from sqlalchemy import text
from sqlalchemy.engine import Connection

from alembic import context
from app.config import Settings, load_settings_or_exit
from app.database import create_engine
from app.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _settings() -> Settings:
    url = config.get_main_option("sqlalchemy.url")
    settings = load_settings_or_exit()
    return settings.model_copy(update={"database_url": url}) if url else settings


# Any fixed number: every Chitram process that migrates takes the same PostgreSQL advisory lock.
MIGRATION_LOCK_ID = 0x43484954  # "CHIT"


def _ours(_object: object, name: str | None, type_: str, _reflected: bool, _compare_to: object) -> bool:
    """What autogenerate and `alembic check` compare: not pgqueuer's tables, whose schema is pgqueuer's
    own (installed by revision 0006, converged by `pgq upgrade`, ADR 0016)."""
    return not (type_ == "table" and name is not None and name.startswith("pgqueuer"))


def _configure(connection: Connection) -> None:
    locked = connection.dialect.name == "postgresql"
    if locked:
        # Several containers starting at once must not run the same migration twice: the first
        # migrates, the others wait here and then find nothing left to do. A session lock, and the
        # implicit transaction ended, so that Alembic's own transaction is the one that commits.
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things in place; batch mode rebuilds tables there.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_object=_ours,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if locked:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()


async def _run_online() -> None:
    engine = create_engine(_settings())
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
    await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=_settings().database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(_run_online())
