"""The embedded default (SQLite + local disk) served by a real uvicorn, as `make run` starts it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.services.content_store import original_key
from tests.conftest import BACKEND_DIR
from tests.factories import make_jpeg
from tests.servers import app_server_env, free_port, running_app_server


@pytest.fixture
def embedded_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    storage = tmp_path / "images"
    env = app_server_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'chitram.db'}",
        LOCAL_STORAGE_PATH=str(storage),
        HOST="127.0.0.1",
        PORT=str(free_port()),
    )
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=BACKEND_DIR, env=env, check=True, capture_output=True
    )
    with running_app_server(env, tmp_path / "server.log", start_timeout=20) as base_url:
        yield base_url, storage


def test_embedded_default_uploads_serves_and_deletes_over_http(embedded_server: tuple[str, Path]) -> None:
    base_url, storage = embedded_server
    body = make_jpeg(120, 80)
    with httpx.Client(base_url=base_url) as client:
        health = client.get("/health").json()
        assert health == {**health, "status": "healthy", "database": "connected", "storage": "connected"}
        created = client.post("/api/v1/images/upload", files={"file": ("smoke.jpg", body, "image/jpeg")})
        assert created.status_code == 201, created.text
        image = created.json()
        stored = storage / original_key(image["checksum"], "image/jpeg")
        assert stored.read_bytes() == body
        download = client.get(image["url"])
        assert download.status_code == 200
        assert download.content == body
        assert download.headers["x-content-type-options"] == "nosniff"
        assert client.get(f"/api/v1/images/{image['id']}").json()["created_at"] == image["created_at"]
        headers = {"X-Delete-Token": image["delete_token"]}
        assert client.delete(f"/api/v1/images/{image['id']}", headers=headers).status_code == 204
        assert client.get(image["url"]).status_code == 404
        assert not stored.exists()


def test_embedded_default_gives_an_account_its_uploads_and_refuses_a_gone_account(
    embedded_server: tuple[str, Path], tmp_path: Path
) -> None:
    """On SQLite too, an owned upload's INSERT writes only for an active account (ADR 0002)."""
    base_url, storage = embedded_server
    with httpx.Client(base_url=base_url) as client:
        account = client.post(
            "/api/v1/auth/register", json={"email": "embedded@example.com", "password": "correct horse battery"}
        ).json()
        headers = {"Authorization": f"Bearer {account['access_token']}"}
        files = {"file": ("mine.jpg", make_jpeg(120, 80), "image/jpeg")}
        created = client.post("/api/v1/images/upload", files=files, headers=headers)
        assert created.status_code == 201, created.text
        assert created.json()["delete_token"] is None
        mine = client.get("/api/v1/users/me/images", headers=headers).json()["items"]
        assert [image["id"] for image in mine] == [created.json()["id"]]

        with sqlite3.connect(tmp_path / "chitram.db") as database:
            database.execute("UPDATE users SET is_active = 0")
        other = {"file": ("other.jpg", make_jpeg(121, 80), "image/jpeg")}  # new content: stored, then refused
        refused = client.post("/api/v1/images/upload", files=other, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["detail"]["code"] == "UNAUTHORIZED"
        originals = [path.relative_to(storage).as_posix() for path in (storage / "originals").rglob("*.jpg")]
        # The refused upload's original is gone again.
        assert originals == [original_key(created.json()["checksum"], "image/jpeg")]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"STORAGE_BACKEND": "ftp"}, "STORAGE_BACKEND"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://root@localhost/x"}, "DATABASE_URL"),
        ({"APP_ENV": "production"}, "JWT_SECRET_KEY"),
        ({"APP_ENV": "production", "JWT_SECRET_KEY": "changethis"}, "JWT_SECRET_KEY"),
        ({"MAX_FILE_SIZE_MB": "-1"}, "MAX_FILE_SIZE_MB"),
        ({"ALLOWED_CONTENT_TYPES": "image/jpeg,image/bmp"}, "ALLOWED_CONTENT_TYPES"),
        ({"MAX_ANIMATION_PIXELS": "1000", "MAX_IMAGE_PIXELS": "2000"}, "MAX_ANIMATION_PIXELS"),
        ({"STRIP_METADATA": "perhaps"}, "STRIP_METADATA"),
        ({"REDIS_URL": "redis+cluster://127.0.0.1:7000,127.0.0.1:x"}, "REDIS_URL"),
        ({"REDIS_URL": "redis+cluster://127.0.0.1:7000/2"}, "REDIS_URL"),
        ({"DATABASE_REPLICA_URL": "postgresql+asyncpg://postgres@127.0.0.1:5433/chitram"}, "DATABASE_REPLICA_URL"),
    ],
)
def test_bad_configuration_stops_start_up_with_one_clear_line(variables: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=BACKEND_DIR,
        env=app_server_env(**variables),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chitram: invalid configuration:")
    assert message in lines[0]
    assert "changethis" not in lines[0]  # the rejected secret is not echoed
