"""The `chitram` command line run as a real process against `python -m app` on loopback.

Each server is the embedded default (SQLite + local disk, no Redis: rate limits count in memory),
migrated by Alembic. Each test gets its own HOME and XDG_CONFIG_HOME, and a BROWSER that only writes
the address it was asked to open to a file.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKEND_DIR
from tests.servers import app_server_env, free_port, running_app_server

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Server:
    base_url: str
    storage: Path  # LOCAL_STORAGE_PATH: where originals land


@dataclass(frozen=True)
class Account:
    email: str
    access_token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass(frozen=True)
class CliHome:
    """One user's machine: their home, config folder and the file the fake browser writes to."""

    env: dict[str, str]
    config_file: Path
    opened_file: Path
    cwd: Path


def start_server(folder: Path, **settings: str) -> Iterator[Server]:
    """A migrated embedded-default server in `folder`, with `settings` as environment variables."""
    folder.mkdir(parents=True, exist_ok=True)
    storage = folder / "images"
    env = app_server_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{folder / 'chitram.db'}",
        LOCAL_STORAGE_PATH=str(storage),
        HOST="127.0.0.1",
        PORT=str(free_port()),
        JWT_SECRET_KEY="cli-test-secret-that-is-long-enough-for-hs256-0123",
        **settings,
    )
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=BACKEND_DIR, env=env, check=True, capture_output=True
    )
    with running_app_server(env, folder / "server.log", start_timeout=30) as base_url:
        yield Server(base_url, storage)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One roomy server for a test module (start-up costs seconds); tests keep apart by account."""
    yield from start_server(
        tmp_path_factory.mktemp("server"), RATE_LIMIT_PER_MINUTE="10000", AUTH_RATE_LIMIT_PER_MINUTE="10000"
    )


def register(base_url: str) -> Account:
    """A new account with a unique email."""
    email = f"cli-{uuid.uuid4().hex[:10]}@example.com"
    response = httpx.post(f"{base_url}/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return Account(email, response.json()["access_token"])


def create_key(base_url: str, account: Account, scopes: tuple[str, ...] = ("images:read", "images:upload")) -> str:
    response = httpx.post(
        f"{base_url}/api/v1/users/me/api-keys",
        json={"name": "test key", "scopes": list(scopes)},
        headers=account.bearer,
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


@pytest.fixture
def account(server: Server) -> Account:
    return register(server.base_url)


@pytest.fixture
def home(tmp_path: Path) -> CliHome:
    """HOME, XDG_CONFIG_HOME and BROWSER in tmp_path; nothing from the developer's own chitram setup."""
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{opened}"\n')
    browser.chmod(browser.stat().st_mode | stat.S_IXUSR)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CHITRAM_") and key not in {"DISPLAY", "WAYLAND_DISPLAY"}
    }
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"), BROWSER=str(browser))
    (tmp_path / "home").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    return CliHome(env, tmp_path / "config" / "chitram" / "config.toml", opened, work)


CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def chitram(home: CliHome) -> CliRunner:
    """`chitram ARGS...` as a process in the test's home; extra environment variables as keywords."""

    def run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chitram_cli", *args],
            cwd=home.cwd,
            env={**home.env, **env},
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


@pytest.fixture
def logged_in(chitram: CliRunner, server: Server, account: Account) -> Account:
    """The test's account, logged in through `chitram login` (the way a user would)."""
    result = chitram("login", "--server", server.base_url, "--email", account.email, "--password-stdin", stdin=PASSWORD)
    assert result.returncode == 0, result.stderr
    return account
