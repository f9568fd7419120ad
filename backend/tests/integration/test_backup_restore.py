"""Backups: scripts/backup.sh then scripts/restore.sh into a fresh database and storage serves the same images.

Real PostgreSQL (TEST_DATABASE_URL's server; two uniquely named databases per test) and a real S3
server (moto, from conftest) or a local folder; the scripts run as an operator would run them, with the
app's environment variables. pg_dump missing is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from tests.conftest import (
    DEFAULT_TEST_DATABASE_URL,
    REPO_ROOT,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    TEST_CLIENT_ADDRESS,
    corpus_bytes,
    migrate,
)
from tests.factories import make_jpeg, upload_ok
from tests.image_checks import frames_pixels

SCRIPTS_DIR = REPO_ROOT / "scripts"
CORPUS_FILES = ("hopper.jpg", "flower.jpg", "hopper.png", "transparent.png")
SCRIPT_TIMEOUT_SECONDS = 120
# Background work (thumbnails) must be over before a backup, or the copy would differ from what was read.
SETTLE_ATTEMPTS = 100
SETTLE_INTERVAL_SECONDS = 0.1

DatabaseFactory = Callable[[bool], Awaitable[str]]


async def _admin_execute(statement: str) -> None:
    engine = create_async_engine(
        os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL), isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture
async def new_database() -> AsyncIterator[DatabaseFactory]:
    """Make uniquely named databases (migrated by Alembic or left empty); all are dropped afterwards."""
    admin_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    names: list[str] = []

    async def create(migrated: bool) -> str:
        name = f"chitram_backup_{uuid.uuid4().hex[:12]}"
        await _admin_execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        if migrated:
            # Alembic's env.py runs its own event loop, so it gets a thread of its own.
            await anyio.to_thread.run_sync(migrate, url)
        return url

    try:
        yield create
    finally:
        for name in names:
            await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _settings(database_url: str, backend: str, s3_endpoint: str, storage_path: Path) -> Settings:
    return Settings(
        app_env="development",
        database_url=database_url,
        storage_backend=backend,
        local_storage_path=storage_path,
        minio_endpoint=s3_endpoint,
        minio_access_key=S3_ACCESS_KEY,
        minio_secret_key=S3_SECRET_KEY,
        minio_bucket=f"backup-{uuid.uuid4().hex[:16]}",
        minio_secure=False,
        jwt_secret_key="test-secret-that-is-long-enough-for-hs256-0123456789",
    )


def _script_environment(settings: Settings | None, **extra: str) -> dict[str, str]:
    """The caller's environment without any app setting, plus exactly the ones given (as the app reads them)."""
    environment = {name: value for name, value in os.environ.items() if name.lower() not in Settings.model_fields}
    environment["PYTHON"] = sys.executable
    if settings is not None:
        environment |= {
            "DATABASE_URL": settings.database_url,
            "STORAGE_BACKEND": settings.storage_backend,
            "LOCAL_STORAGE_PATH": str(settings.local_storage_path),
            "MINIO_ENDPOINT": settings.minio_endpoint,
            "MINIO_ACCESS_KEY": settings.minio_access_key,
            "MINIO_SECRET_KEY": settings.minio_secret_key,
            "MINIO_BUCKET": settings.minio_bucket,
            "MINIO_SECURE": str(settings.minio_secure).lower(),
        }
    return environment | extra


async def _run_script(name: str, argument: Path, environment: Mapping[str, str]) -> tuple[int, str]:
    """Run one of scripts/*.sh as an operator would; its exit status and everything it printed."""
    with anyio.fail_after(SCRIPT_TIMEOUT_SECONDS):
        result = await anyio.run_process(
            ["bash", str(SCRIPTS_DIR / name), str(argument)], env=dict(environment), check=False
        )
    return result.returncode, result.stdout.decode() + result.stderr.decode()


async def _with_client(settings: Settings, action: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    """Run `action` against a real app (its lifespan included) built on these settings."""
    from app.main import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=TEST_CLIENT_ADDRESS, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await action(client)


# What a client sees of one image: its metadata and the bytes (and content type) behind each of its links.
Served = tuple[dict[str, Any], dict[str, tuple[bytes, str]]]


async def _upload_images(client: httpx.AsyncClient) -> list[str]:
    bodies = [(name, corpus_bytes(name)) for name in CORPUS_FILES] + [("made.jpg", make_jpeg(321, 123))]
    return [(await upload_ok(client, body, filename=name))["id"] for name, body in bodies]


async def _read_back(client: httpx.AsyncClient, image_ids: list[str]) -> list[Served]:
    served = []
    for image_id in image_ids:
        response = await client.get(f"/api/v1/images/{image_id}")
        assert response.status_code == 200, response.text
        metadata = response.json()
        links = {}
        for field, link in sorted(metadata.items()):
            # The files and thumbnails; `page_url` is HTML, different on every answer (its CSRF token and nonce).
            if field.endswith("url") and link and link.startswith("/api/"):
                download = await client.get(link)
                assert download.status_code == 200, f"{field} {link}: {download.status_code}"
                links[field] = (download.content, download.headers["content-type"])
        served.append((metadata, links))
    return served


async def _settled_read_back(client: httpx.AsyncClient, image_ids: list[str]) -> list[Served]:
    """The images once background work (thumbnails) is over: nothing pending, two reads alike."""
    previous = None
    for _ in range(SETTLE_ATTEMPTS):
        served = await _read_back(client, image_ids)
        if served == previous and not any("pending" in metadata.values() for metadata, _ in served):
            return served
        previous = served
        await anyio.sleep(SETTLE_INTERVAL_SECONDS)
    raise AssertionError(f"images still changing after {SETTLE_ATTEMPTS} reads: {previous}")


async def _upload_and_settle(client: httpx.AsyncClient) -> tuple[list[str], list[Served]]:
    image_ids = await _upload_images(client)
    return image_ids, await _settled_read_back(client, image_ids)


def _only_backup_in(root: Path) -> Path:
    backups = sorted(root.iterdir())
    assert [path.name.startswith("chitram-") and not path.name.endswith(".partial") for path in backups] == [True]
    return backups[0]


def test_pg_dump_and_pg_restore_are_installed() -> None:
    missing = [tool for tool in ("pg_dump", "pg_restore", "psql") if shutil.which(tool) is None]
    assert not missing, f"{missing} not installed: run scripts/install-system-deps.sh"


@pytest.mark.parametrize("backend", ["minio", "local"])
async def test_backup_restored_into_fresh_database_and_storage_serves_the_same_images(
    backend: str, new_database: DatabaseFactory, s3_endpoint: str, tmp_path: Path
) -> None:
    source = _settings(await new_database(True), backend, s3_endpoint, tmp_path / "source-images")
    image_ids, served = await _with_client(source, _upload_and_settle)
    originals = [corpus_bytes(name) for name in CORPUS_FILES]
    # Stored stripped of their metadata: the same pictures.
    assert [frames_pixels(links["url"][0]) for _, links in served[: len(originals)]] == [
        frames_pixels(original) for original in originals
    ]

    status, output = await _run_script("backup.sh", tmp_path / "backups", _script_environment(source))
    assert status == 0, output
    backup = _only_backup_in(tmp_path / "backups")
    assert {path.name for path in backup.iterdir()} == {"database.dump", "objects", "objects.json", "SHA256SUMS"}

    target = _settings(await new_database(False), backend, s3_endpoint, tmp_path / "restored-images")
    status, output = await _run_script("restore.sh", backup, _script_environment(target))
    assert status == 0, output

    restored = await _with_client(target, lambda client: _settled_read_back(client, image_ids))
    assert restored == served


async def test_restore_refuses_a_database_that_is_not_empty(
    new_database: DatabaseFactory, s3_endpoint: str, tmp_path: Path
) -> None:
    source = _settings(await new_database(True), "minio", s3_endpoint, tmp_path / "unused")
    await _with_client(source, _upload_images)
    status, output = await _run_script("backup.sh", tmp_path / "backups", _script_environment(source))
    assert status == 0, output

    # A migrated database with no images still has tables: restoring over it could mix two histories.
    occupied = _settings(await new_database(True), "minio", s3_endpoint, tmp_path / "unused")
    status, output = await _run_script(
        "restore.sh", _only_backup_in(tmp_path / "backups"), _script_environment(occupied)
    )
    assert status != 0
    assert "is not empty" in output


async def test_restore_refuses_storage_that_is_not_empty_and_leaves_the_database_untouched(
    new_database: DatabaseFactory, s3_endpoint: str, tmp_path: Path
) -> None:
    source = _settings(await new_database(True), "minio", s3_endpoint, tmp_path / "unused")
    await _with_client(source, _upload_images)
    status, output = await _run_script("backup.sh", tmp_path / "backups", _script_environment(source))
    assert status == 0, output

    # The source bucket itself is the occupied store; the database is new and empty.
    empty_database = source.model_copy(update={"database_url": await new_database(False)})
    status, output = await _run_script(
        "restore.sh", _only_backup_in(tmp_path / "backups"), _script_environment(empty_database)
    )
    assert status != 0
    assert "is not empty" in output
    engine = create_async_engine(empty_database.database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.scalar(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
    finally:
        await engine.dispose()
    assert tables == 0


async def test_restore_refuses_a_damaged_backup(
    new_database: DatabaseFactory, s3_endpoint: str, tmp_path: Path
) -> None:
    source = _settings(await new_database(True), "local", s3_endpoint, tmp_path / "source-images")
    await _with_client(source, _upload_images)
    status, output = await _run_script("backup.sh", tmp_path / "backups", _script_environment(source))
    assert status == 0, output
    backup = _only_backup_in(tmp_path / "backups")
    damaged = next(path for path in sorted((backup / "objects").rglob("*")) if path.is_file())
    content = damaged.read_bytes()
    damaged.write_bytes(content[:-1] + bytes([content[-1] ^ 0xFF]))  # same size, one bit pattern flipped

    target = _settings(await new_database(False), "local", s3_endpoint, tmp_path / "restored-images")
    status, output = await _run_script("restore.sh", backup, _script_environment(target))
    assert status != 0
    assert "does not match its checksum" in output
    assert not (tmp_path / "restored-images").exists()


@pytest.mark.parametrize("script", ["backup.sh", "restore.sh"])
async def test_scripts_refuse_to_run_without_their_environment_and_print_usage(script: str, tmp_path: Path) -> None:
    status, output = await _run_script(script, tmp_path, _script_environment(None))
    assert status != 0
    assert f"usage: scripts/{script}" in output
    assert "missing environment: DATABASE_URL STORAGE_BACKEND" in output

    status, output = await _run_script(
        script, tmp_path, _script_environment(None, DATABASE_URL="postgresql+asyncpg://x@h/d", STORAGE_BACKEND="minio")
    )
    assert status != 0
    assert "missing environment: MINIO_ENDPOINT MINIO_ACCESS_KEY MINIO_SECRET_KEY MINIO_BUCKET" in output
