"""Fixtures shared by every test: the real services the suite runs against.

PostgreSQL (TEST_DATABASE_URL) and S3 (moto's server on loopback, started here) are real; a run
where one is unreachable stops at once with one clear line, it never skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.config import Config
from fastapi import FastAPI
from moto.server import ThreadedMotoServer
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import command
from app.config import Settings

pytest_plugins = ["tests.redis_fixtures", "tests.pg_replica"]

BACKEND_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = BACKEND_DIR.parent
# The image corpus is part of the checkout; its README.md says what each file is and where it came from.
CORPUS_DIR = BACKEND_DIR / "tests" / "fixtures" / "images"
DEFAULT_TEST_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
S3_ACCESS_KEY = "test-access-key"
S3_SECRET_KEY = "test-secret-key"
# A documentation address (RFC 5737) as the test client's peer, so upload_ip is recognisable.
TEST_CLIENT_ADDRESS = ("203.0.113.7", 50000)


def load_corpus() -> list[dict[str, Any]]:
    manifest = CORPUS_DIR / "manifest.json"
    if not manifest.is_file():
        raise RuntimeError(
            f"image corpus manifest not found at {manifest}: the checkout is incomplete (it is kept in the repository)"
        )
    cases: list[dict[str, Any]] = json.loads(manifest.read_text())["files"]
    return cases


def corpus_bytes(name: str) -> bytes:
    return (CORPUS_DIR / name).read_bytes()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """`host:port` of a moto S3 server on loopback, for the whole run (moto checks no credentials)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"{host}:{port}"
    finally:
        server.stop()


async def _admin_execute(admin_url: str, statement: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


def migrate(database_url: str) -> None:
    """Bring a database to the newest schema with Alembic, the schema's only source."""
    config = Config(str(BACKEND_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(BACKEND_DIR / "alembic"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A uniquely named PostgreSQL database for this run, migrated by Alembic, dropped at the end."""
    admin_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    name = f"chitram_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin_execute(admin_url, f'CREATE DATABASE "{name}"'))
    except Exception as error:
        shown = make_url(admin_url).render_as_string(hide_password=True)
        pytest.exit(f"PostgreSQL is unreachable at {shown} (TEST_DATABASE_URL): {error}", returncode=3)
    database_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrate(database_url)
        yield database_url
    finally:
        asyncio.run(_admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(postgres_url: str, s3_endpoint: str, redis_url: str) -> Settings:
    """The production stack: PostgreSQL, S3 over HTTP (a fresh bucket per test) and Redis.

    Rate limits are raised so that tests which upload a lot are not refused; the limits have
    tests of their own.
    """
    return Settings(
        redis_url=redis_url,
        rate_limit_per_minute=10_000,
        auth_rate_limit_per_minute=10_000,
        thumbnail_sweep_interval_seconds=0.2,
        app_env="development",
        database_url=postgres_url,
        storage_backend="minio",
        minio_endpoint=s3_endpoint,
        minio_access_key=S3_ACCESS_KEY,
        minio_secret_key=S3_SECRET_KEY,
        minio_bucket=f"test-{uuid.uuid4().hex[:16]}",
        minio_secure=False,
        jwt_secret_key="test-secret-that-is-long-enough-for-hs256-0123456789",
    )


async def _truncate_tables(postgres_url: str) -> None:
    engine = create_async_engine(postgres_url)
    try:
        async with engine.begin() as connection:
            tables = "images, users, variants, integrity_findings, maintenance_runs, pgqueuer, pgqueuer_log"
            await connection.execute(text(f"TRUNCATE {tables} CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its real lifespan (engine, storage start-up); tables emptied afterwards."""
    from app.main import create_app  # imported late: unit tests need no app

    application = create_app(settings)
    try:
        async with application.router.lifespan_context(application):
            yield application
    finally:
        await _truncate_tables(settings.database_url)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: a test sees the 500 a real client would, not the raw exception.
    transport = httpx.ASGITransport(app=app, client=TEST_CLIENT_ADDRESS, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http_client:
        yield http_client
