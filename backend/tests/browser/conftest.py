"""A real Chitram (uvicorn, PostgreSQL, local storage) on a loopback port, and Debian's Chromium to drive it.

The server gets a database of its own, so its background thumbnail sweeper never touches the rows
of the other suites. Chromium is the system's (`/usr/bin/chromium`, installed by
`scripts/install-system-deps.sh`); Playwright never downloads a browser of its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Dialog, Page, Playwright, async_playwright
from sqlalchemy.engine import make_url

import tests.conftest as shared
from tests.conftest import DEFAULT_TEST_DATABASE_URL
from tests.factories import bearer, make_jpeg
from tests.servers import app_server_env, free_port, running_app_server

CHROMIUM = Path(os.environ.get("CHITRAM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS_DIR = Path(__file__).resolve().parent / "screenshots"
SERVER_START_TIMEOUT_SECONDS = 30
JWT_SECRET = "browser-tests-secret-that-is-long-enough-0123456789"
PASSWORD = "correct horse battery"
# Small, so that the browser's too-large check needs only a few megabytes of test file.
MAX_FILE_SIZE_MB = 2
# Actions and assertions wait at most this long: a page of this app answers in milliseconds.
TIMEOUT_MS = 10_000


@dataclass
class LiveServer:
    base_url: str
    storage_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Account:
    email: str
    user_id: str
    access_token: str
    image_ids: list[str] = field(default_factory=list)  # newest first


@pytest.fixture(scope="session")
def browser_database_url() -> Iterator[str]:
    """A PostgreSQL database of the browser suite's own, migrated by Alembic, dropped at the end."""
    admin_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    name = f"chitram_browser_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(shared._admin_execute(admin_url, f'CREATE DATABASE "{name}"'))
    except Exception as error:
        shown = make_url(admin_url).render_as_string(hide_password=True)
        pytest.exit(f"PostgreSQL is unreachable at {shown} (TEST_DATABASE_URL): {error}", returncode=3)
    database_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        shared.migrate(database_url)
        yield database_url
    finally:
        asyncio.run(shared._admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def live_server(browser_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`python -m app` (uvicorn) on a free loopback port; no Redis, rate limits out of the way."""
    workdir = tmp_path_factory.mktemp("live-server")
    port = free_port()
    env = app_server_env(
        DATABASE_URL=browser_database_url,
        STORAGE_BACKEND="local",
        LOCAL_STORAGE_PATH=str(workdir / "images"),
        JWT_SECRET_KEY=JWT_SECRET,
        RATE_LIMIT_PER_MINUTE="100000",
        AUTH_RATE_LIMIT_PER_MINUTE="100000",
        MAX_FILE_SIZE_MB=str(MAX_FILE_SIZE_MB),
        THUMBNAIL_SWEEP_INTERVAL_SECONDS="0.5",
        HOST="127.0.0.1",
        PORT=str(port),
    )
    log_path = workdir / "server.log"
    with running_app_server(env, log_path, start_timeout=SERVER_START_TIMEOUT_SECONDS) as base_url:
        yield LiveServer(base_url, workdir / "images", log_path)


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's chromium package "
            "(scripts/install-system-deps.sh does) or point CHITRAM_CHROMIUM at one",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="session")
async def playwright_driver() -> AsyncIterator[Playwright]:
    async with async_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
async def browser(playwright_driver: Playwright, chromium_executable: Path) -> AsyncIterator[Browser]:
    browser = await playwright_driver.chromium.launch(
        executable_path=str(chromium_executable), headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        await browser.close()


class PageProblems:
    """What a person would never see but a broken page shows: script errors and CSP violations."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.messages.append(f"CSP: {message.text}")

    def page_error(self, error: Exception) -> None:
        self.messages.append(f"uncaught: {error}")


async def new_context(
    browser: Browser, live_server: LiveServer, *, width: int = 1280, height: int = 900
) -> BrowserContext:
    context = await browser.new_context(
        base_url=live_server.base_url, viewport={"width": width, "height": height}, device_scale_factor=1
    )
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.base_url)
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture
async def context(browser: Browser, live_server: LiveServer) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) per test."""
    context = await new_context(browser, live_server)
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    """A tab whose script errors and CSP violations fail the test."""
    page = await context.new_page()
    problems = PageProblems()
    page.on("console", problems.console)
    page.on("pageerror", problems.page_error)
    yield page
    assert problems.messages == [], problems.messages


async def screenshot(page: Page, name: str) -> None:
    """Keep a picture of the page for a person to look at (backend/tests/browser/screenshots/)."""
    SCREENSHOTS_DIR.mkdir(exist_ok=True)
    await page.screenshot(path=SCREENSHOTS_DIR / f"{name}.png", full_page=True)


def unique_email(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}@example.com"


async def create_account(live_server: LiveServer, label: str, *, images: int = 0) -> Account:
    """An account made through the API, with `images` small JPEGs uploaded with its Bearer token."""
    email = unique_email(label)
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10) as api:
        registered = await api.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        account = Account(email, registered.json()["user"]["id"], registered.json()["access_token"])
        for number in range(images):
            body = make_jpeg(32, 24, color=(number * 5 % 256, 90, 160))
            created = await api.post(
                "/api/v1/images/upload",
                files={"file": (f"seed-{number:02d}.jpg", body, "image/jpeg")},
                headers=bearer(account.access_token),
            )
            assert created.status_code == 201, created.text
            account.image_ids.insert(0, created.json()["id"])
    return account


async def log_in(page: Page, email: str, password: str = PASSWORD, *, next_path: str = "") -> None:
    """Log in through the login form as a person would."""
    await page.goto(f"/login?next={next_path}" if next_path else "/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


# The viewports the pages are checked at: a phone, and a desktop.
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1440, "height": 900}


def accept_next_dialog(page: Page) -> list[str]:
    """Accept the page's next confirm() dialog; the list returned receives its message."""
    messages: list[str] = []

    async def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        await dialog.accept()

    page.once("dialog", accept)
    return messages
