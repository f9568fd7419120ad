"""Alembic is the only source of the schema: it must build, match the models and undo on both databases."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import command
from app.config import Settings
from tests.api.apps import running_app
from tests.conftest import BACKEND_DIR, DEFAULT_TEST_DATABASE_URL, _admin_execute, corpus_bytes
from tests.factories import make_jpeg, upload
from tests.integration.legacy_data import LegacyImage, insert_legacy_rows, legacy_image, write_legacy_objects


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


def test_images_stored_before_content_addressing_survive_the_upgrade_and_the_downgrade(
    empty_database: str, tmp_path: Path
) -> None:
    """Old-layout images (own keys, unstripped, duplicates stored twice) migrate up and down intact."""
    config = alembic_config(empty_database)
    command.upgrade(config, "0003")
    photo, thumbnail = corpus_bytes("jpeg_camera_metadata_orientation_6.jpg"), make_jpeg(30, 40)
    legacy = [
        legacy_image(photo, "image/jpeg", (800, 600), thumbnail),
        legacy_image(photo, "image/jpeg", (800, 600), thumbnail),  # the same file, stored twice back then
        legacy_image(corpus_bytes("hopper.png"), "image/png", (128, 128), thumbnail),
    ]
    storage_root = tmp_path / "images"
    asyncio.run(insert_legacy_rows(empty_database, legacy))
    write_legacy_objects(storage_root, legacy)

    command.upgrade(config, "head")
    command.check(config)
    settings = Settings(database_url=empty_database, storage_backend="local", local_storage_path=storage_root)
    asyncio.run(_served_as_before(settings, legacy))

    command.downgrade(config, "0003")
    assert asyncio.run(_unique_constraints(empty_database)) == {"uq_images_storage_key": ["storage_key"]}
    command.upgrade(config, "head")
    asyncio.run(_served_as_before(settings, legacy))


def test_the_downgrade_refuses_once_images_share_content_addressed_originals(
    empty_database: str, tmp_path: Path
) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "head")
    settings = Settings(database_url=empty_database, storage_backend="local", local_storage_path=tmp_path)

    async def upload_twice() -> None:
        async with running_app(settings, empty_tables_on_exit=False) as (_app, client):
            for _ in range(2):
                assert (await upload(client, make_jpeg(50, 50))).status_code == 201

    asyncio.run(upload_twice())
    command.downgrade(config, "0004")  # variants can always go (their objects stay: docs/operations.md)
    with pytest.raises(RuntimeError, match="content-addressed originals"):
        command.downgrade(config, "0003")
    # Refused before anything changed: the schema is still 0004's, and upgrades as such.
    command.upgrade(config, "head")
    command.check(config)


async def _served_as_before(settings: Settings, legacy: list[LegacyImage]) -> None:
    async with running_app(settings, empty_tables_on_exit=False) as (_app, client):
        for image in legacy:
            metadata = await client.get(f"/api/v1/images/{image.id}")
            assert metadata.status_code == 200, metadata.text
            assert metadata.json()["checksum"] == image.checksum
            assert "storage_key" not in metadata.json()
            assert (await client.get(metadata.json()["url"])).content == image.body
            assert (await client.get(metadata.json()["thumbnail_url"])).content == image.thumbnail


async def _unique_constraints(database_url: str) -> dict[str, list[str]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            found: list[dict[str, Any]] = await connection.run_sync(
                lambda sync: inspect(sync).get_unique_constraints("images")
            )
            return {str(item["name"]): list(item["column_names"]) for item in found}
    finally:
        await engine.dispose()


def test_revision_0007_counts_what_each_account_already_owns(empty_database: str) -> None:
    """Quotas start from the truth: the counters are filled in from the rows each account owns."""
    config = alembic_config(empty_database)
    command.upgrade(config, "0006")
    owner, other = uuid.uuid4(), uuid.uuid4()

    async def seed() -> None:
        engine = create_async_engine(empty_database)
        try:
            async with engine.begin() as connection:
                for user_id, email in ((owner, "owner@example.com"), (other, "other@example.com")):
                    await connection.execute(
                        text(
                            "INSERT INTO users (id, email, hashed_password, is_active, created_at)"
                            " VALUES (:id, :email, 'x', true, CURRENT_TIMESTAMP)"
                        ),
                        {"id": user_id if "postgresql" in empty_database else user_id.hex, "email": email},
                    )
                for number, size in enumerate((1000, 2500)):
                    await connection.execute(
                        text(
                            "INSERT INTO images (id, filename, storage_key, content_type, file_size, width, height,"
                            " checksum, metadata_stripped, created_at, owner_id, thumbnail_status, thumbnail_attempts)"
                            " VALUES (:id, 'a.jpg', :key, 'image/jpeg', :size, 1, 1, :checksum, true,"
                            " CURRENT_TIMESTAMP, :owner, 'ready', 0)"
                        ),
                        {
                            "id": uuid.uuid4() if "postgresql" in empty_database else uuid.uuid4().hex,
                            "key": f"k{number}",
                            "size": size,
                            "checksum": f"{number:064d}",
                            "owner": owner if "postgresql" in empty_database else owner.hex,
                        },
                    )
        finally:
            await engine.dispose()

    async def counters() -> dict[str, tuple[int, int]]:
        engine = create_async_engine(empty_database)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(text("SELECT email, used_bytes, used_images FROM users"))
                return {row.email: (row.used_bytes, row.used_images) for row in rows}
        finally:
            await engine.dispose()

    asyncio.run(seed())
    command.upgrade(config, "head")
    assert asyncio.run(counters()) == {"owner@example.com": (3500, 2), "other@example.com": (0, 0)}
