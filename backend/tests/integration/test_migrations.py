"""Alembic is the only source of the schema: it must build, match the models and undo on both databases."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.config import Config
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import command
from tests.conftest import BACKEND_DIR, DEFAULT_TEST_DATABASE_URL, _admin_execute


def alembic_config(database_url: str) -> Config:
    config = Config(str(BACKEND_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(BACKEND_DIR / "alembic"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


async def _tables(database_url: str) -> set[str]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            names: list[str] = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            return set(names)
    finally:
        await engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    admin_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    name = f"chitram_migrations_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin_execute(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_migrations_build_the_schema_the_models_describe_and_undo_it(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "head")
    # Committed, not just run: a fresh connection sees the tables.
    assert {"images", "users", "alembic_version"} <= asyncio.run(_tables(empty_database))
    command.check(config)  # raises when the models and the migrations disagree
    command.upgrade(config, "head")  # a second run finds nothing to do
    command.downgrade(config, "base")
    assert asyncio.run(_tables(empty_database)) <= {"alembic_version"}
    command.upgrade(config, "head")
    command.check(config)
