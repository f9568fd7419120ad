"""`chitram` against a real server: login, upload, ls, rm, open, and every failure's exit code."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import stat
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.services.content_store import original_key
from tests.cli.conftest import PASSWORD, Account, CliHome, CliRunner, Server, create_key, register, start_server
from tests.conftest import CORPUS_DIR
from tests.servers import free_port

JPEG = "hopper.jpg"
PNG = "hopper.png"


def corpus_copy(home: CliHome, *names: str) -> list[str]:
    """Corpus files copied into the working folder, as a user's files would be; their paths."""
    for name in names:
        shutil.copy(CORPUS_DIR / name, home.cwd / name)
    return list(names)


def stored_key(home: CliHome) -> str:
    key: str = tomllib.loads(home.config_file.read_text())["api_key"]
    return key


def links(stdout: str) -> list[tuple[str, str]]:
    """(file URL, page URL) per uploaded file, from the text output."""
    files = re.findall(r"^  file  (\S+)$", stdout, re.MULTILINE)
    pages = re.findall(r"^  page  (\S+)$", stdout, re.MULTILINE)
    return list(zip(files, pages, strict=True))


def upload_json(chitram: CliRunner, *args: str) -> list[dict[str, Any]]:
    result = chitram("upload", "--json", *args)
    assert result.returncode == 0, result.stderr
    uploaded: list[dict[str, Any]] = json.loads(result.stdout)
    return uploaded


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# --- login ---------------------------------------------------------------------------------------


def test_login_stores_a_working_key_readable_only_by_its_owner(
    chitram: CliRunner, home: CliHome, server: Server, account: Account
) -> None:
    result = chitram("login", "--server", server.base_url, "--email", account.email, "--password-stdin", stdin=PASSWORD)
    assert result.returncode == 0, result.stderr
    config = tomllib.loads(home.config_file.read_text())
    assert config["server"] == server.base_url
    assert config["api_key"].startswith("chk_")
    assert config["api_key"] not in result.stdout + result.stderr
    assert account.email in result.stderr
    assert stat.S_IMODE(home.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.config_file.parent.stat().st_mode) == 0o700

    me = httpx.get(f"{server.base_url}/api/v1/auth/me", headers={"X-API-Key": config["api_key"]})
    assert me.status_code == 200
    assert me.json()["email"] == account.email
    keys = httpx.get(f"{server.base_url}/api/v1/users/me/api-keys", headers=account.bearer).json()["items"]
    assert [(key["name"], sorted(key["scopes"])) for key in keys] == [
        (f"chitram-cli on {socket.gethostname()}", ["images:delete", "images:read", "images:upload"])
    ]


def test_login_with_a_wrong_password_stores_nothing(
    chitram: CliRunner, home: CliHome, server: Server, account: Account
) -> None:
    result = chitram("login", "--server", server.base_url, "--email", account.email, "--password-stdin", stdin="nope")
    assert result.returncode == 4
    assert "INVALID_CREDENTIALS" in one_line(result.stderr)
    assert not home.config_file.exists()


def test_login_with_an_existing_key_checks_and_stores_it(
    chitram: CliRunner, home: CliHome, server: Server, account: Account
) -> None:
    key = create_key(server.base_url, account)
    result = chitram("login", "--server", server.base_url, "--api-key", key)
    assert result.returncode == 0, result.stderr
    assert stored_key(home) == key
    assert key not in result.stdout + result.stderr

    refused = chitram("login", "--server", server.base_url, "--api-key", key[:-4] + "AAAA")
    assert refused.returncode == 4
    assert stored_key(home) == key  # a refused key does not replace the working one


# --- upload --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("logged_in")
def test_upload_prints_links_that_serve_the_bytes_the_server_stores(
    chitram: CliRunner, home: CliHome, server: Server
) -> None:
    result = chitram("upload", *corpus_copy(home, JPEG, PNG))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == JPEG
    uploaded = links(result.stdout)
    assert len(uploaded) == 2
    for file_url, page in uploaded:
        assert file_url.startswith(f"{server.base_url}/api/v1/images/")
        image_id = file_url.removeprefix(f"{server.base_url}/api/v1/images/").removesuffix("/file")
        assert page == f"{server.base_url}/image/{image_id}"
        metadata = httpx.get(f"{server.base_url}/api/v1/images/{image_id}").json()
        stored = (server.storage / original_key(metadata["checksum"], metadata["content_type"])).read_bytes()
        download = httpx.get(file_url)  # anonymously: an unlisted link works for whoever has it
        assert download.status_code == 200
        assert download.content == stored
        assert hashlib.sha256(download.content).hexdigest() == metadata["checksum"]
        assert httpx.get(page).status_code == 200


@pytest.mark.usefixtures("logged_in")
def test_upload_json_gives_each_file_with_absolute_links(chitram: CliRunner, home: CliHome, server: Server) -> None:
    uploaded = upload_json(chitram, *corpus_copy(home, JPEG, PNG))
    assert [item["file"] for item in uploaded] == [JPEG, PNG]
    assert [item["content_type"] for item in uploaded] == ["image/jpeg", "image/png"]
    for item in uploaded:
        assert item["url"] == f"{server.base_url}/api/v1/images/{item['id']}/file"
        assert item["page_url"] == f"{server.base_url}/image/{item['id']}"
        assert item["visibility"] == "unlisted"
        assert item["expires_at"] is None
        assert hashlib.sha256(httpx.get(item["url"]).content).hexdigest() == item["checksum"]


@pytest.mark.usefixtures("logged_in")
def test_upload_lets_the_server_tell_the_format_from_the_bytes(chitram: CliRunner, home: CliHome) -> None:
    [item] = upload_json(chitram, *corpus_copy(home, "png_with_jpg_extension.jpg"))
    assert (item["filename"], item["content_type"]) == ("png_with_jpg_extension.jpg", "image/png")


@pytest.mark.usefixtures("logged_in")
def test_private_upload_answers_404_to_anyone_but_its_owner(chitram: CliRunner, home: CliHome) -> None:
    [item] = upload_json(chitram, "--private", *corpus_copy(home, JPEG))
    assert item["visibility"] == "private"
    assert httpx.get(item["url"]).status_code == 404
    owner = httpx.get(item["url"], headers={"X-API-Key": stored_key(home)})
    assert owner.status_code == 200
    assert hashlib.sha256(owner.content).hexdigest() == item["checksum"]

    text = chitram("upload", "--private", JPEG)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == f"{JPEG} (private)"


@pytest.mark.usefixtures("logged_in")
def test_upload_with_expires_sets_the_expiry(chitram: CliRunner, home: CliHome) -> None:
    before = datetime.now(UTC)
    [item] = upload_json(chitram, "--expires", "1h", *corpus_copy(home, JPEG))
    expires_at = datetime.fromisoformat(item["expires_at"].replace("Z", "+00:00"))
    assert before + timedelta(minutes=59) <= expires_at <= datetime.now(UTC) + timedelta(hours=1, seconds=5)


def test_upload_with_a_malformed_expiry_is_a_usage_error(chitram: CliRunner, home: CliHome) -> None:
    result = chitram("upload", "--expires", "soon", *corpus_copy(home, JPEG))
    assert result.returncode == 2
    assert "--expires" in result.stderr


@pytest.mark.usefixtures("logged_in")
def test_upload_reports_a_missing_file_and_uploads_the_others(chitram: CliRunner, home: CliHome) -> None:
    corpus_copy(home, JPEG)
    result = chitram("upload", "missing.png", JPEG)
    assert result.returncode == 9
    lines = result.stderr.strip().splitlines()
    assert lines == ["chitram: missing.png: no such file", "chitram: 1 of 2 files failed"]
    assert len(links(result.stdout)) == 1


@pytest.mark.usefixtures("logged_in")
def test_upload_shows_a_progress_bar_per_file_on_a_terminal(chitram: CliRunner, home: CliHome) -> None:
    # TTY_COMPATIBLE makes rich treat the captured stderr as a terminal.
    result = chitram("upload", *corpus_copy(home, JPEG, PNG), TTY_COMPATIBLE="1", TTY_INTERACTIVE="1")
    assert result.returncode == 0, result.stderr
    assert JPEG in result.stderr
    assert PNG in result.stderr
    assert "100%" in result.stderr
    assert len(links(result.stdout)) == 2  # the bars stay on stderr


# --- ls, rm, open --------------------------------------------------------------------------------


@pytest.mark.usefixtures("logged_in")
def test_ls_lists_the_accounts_images_newest_first(chitram: CliRunner, home: CliHome) -> None:
    first, second = upload_json(chitram, "--private", *corpus_copy(home, JPEG, PNG))
    listed = chitram("ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [item["id"] for item in json.loads(listed.stdout)] == [second["id"], first["id"]]

    table = chitram("ls")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.strip().splitlines()
    assert header.split() == ["id", "name", "size", "visibility", "expires", "created"]
    assert [row.split()[:2] for row in rows] == [[second["id"], PNG], [first["id"], JPEG]]
    assert all("private" in row and "never" in row for row in rows)

    limited = chitram("ls", "--limit", "1", "--json")
    assert [item["id"] for item in json.loads(limited.stdout)] == [second["id"]]


@pytest.mark.usefixtures("logged_in")
def test_rm_deletes_each_id_and_reports_the_missing_ones(chitram: CliRunner, home: CliHome, server: Server) -> None:
    first, second = upload_json(chitram, *corpus_copy(home, JPEG, PNG))
    result = chitram("rm", first["id"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"deleted {first['id']}\n"
    assert httpx.get(first["url"]).status_code == 404

    again = chitram("rm", first["id"], second["id"])
    assert again.returncode == 8
    assert one_line(again.stderr).startswith(f"chitram: {first['id']}: not found (IMAGE_NOT_FOUND)")
    assert again.stdout == f"deleted {second['id']}\n"
    assert httpx.get(second["url"]).status_code == 404


def test_rm_of_someone_elses_image_is_forbidden(
    chitram: CliRunner, home: CliHome, server: Server, logged_in: Account
) -> None:
    other = register(server.base_url)
    other_key = create_key(server.base_url, other, ("images:upload",))
    [theirs] = upload_json(chitram, "--api-key", other_key, *corpus_copy(home, JPEG))
    result = chitram("rm", theirs["id"])
    assert result.returncode == 5
    assert "forbidden" in one_line(result.stderr)
    assert httpx.get(theirs["url"]).status_code == 200


@pytest.mark.usefixtures("logged_in")
def test_a_key_without_the_scope_is_refused_with_exit_5(chitram: CliRunner, home: CliHome, server: Server) -> None:
    account = register(server.base_url)
    read_only = create_key(server.base_url, account, ("images:read",))
    result = chitram("upload", *corpus_copy(home, JPEG), CHITRAM_API_KEY=read_only)
    assert result.returncode == 5
    line = one_line(result.stderr)
    assert "INSUFFICIENT_SCOPE" in line
    assert "images:upload" in line


@pytest.mark.usefixtures("logged_in")
def test_open_runs_the_browser_on_the_image_page(chitram: CliRunner, home: CliHome, server: Server) -> None:
    [item] = upload_json(chitram, *corpus_copy(home, JPEG))
    result = chitram("open", item["id"])
    assert result.returncode == 0, result.stderr
    assert home.opened_file.read_text() == f"{server.base_url}/image/{item['id']}\n"

    missing = chitram("open", "00000000-0000-4000-8000-000000000000")
    assert missing.returncode == 8
    assert "IMAGE_NOT_FOUND" in one_line(missing.stderr)
    assert home.opened_file.read_text().count("\n") == 1  # no browser for a page that does not exist


# --- failures ------------------------------------------------------------------------------------


def test_every_command_needs_a_login_first(chitram: CliRunner, home: CliHome) -> None:
    for args in (("upload", *corpus_copy(home, JPEG)), ("ls",), ("rm", "x")):
        result = chitram(*args)
        assert result.returncode == 4, args
        assert one_line(result.stderr) == (
            "chitram: not logged in: run `chitram login` (or set CHITRAM_URL and CHITRAM_API_KEY)"
        )


def test_a_server_that_is_down_exits_3(chitram: CliRunner, home: CliHome) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    for args in (("upload", *corpus_copy(home, JPEG, PNG)), ("ls",), ("rm", "x", "y"), ("open", "x")):
        result = chitram(*args, CHITRAM_URL=down, CHITRAM_API_KEY="chk_0123456789abcdef_" + "A" * 43)
        assert result.returncode == 3, (args, result.stderr)
        assert one_line(result.stderr) == f"chitram: cannot reach {down}: connection refused"


def test_a_wrong_or_revoked_key_exits_4(chitram: CliRunner, home: CliHome, server: Server, logged_in: Account) -> None:
    wrong = chitram("ls", "--api-key", "chk_0123456789abcdef_" + "A" * 43)
    assert wrong.returncode == 4
    assert one_line(wrong.stderr).startswith("chitram: UNAUTHORIZED: ")
    assert one_line(wrong.stderr).endswith(" (run `chitram login` for a new key)")

    keys = httpx.get(f"{server.base_url}/api/v1/users/me/api-keys", headers=logged_in.bearer).json()["items"]
    for key in keys:
        revoked = httpx.delete(f"{server.base_url}/api/v1/users/me/api-keys/{key['id']}", headers=logged_in.bearer)
        assert revoked.status_code == 204
    result = chitram("upload", *corpus_copy(home, JPEG))
    assert result.returncode == 4
    assert "UNAUTHORIZED" in result.stderr


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Server]:
    # 0.01 MB: hopper.jpg (6.4 KB) fits, hopper.png (30 KB) is refused after its body is read, and
    # icc_profile_big.jpg (512 KB) is refused from its Content-Length before its body is read.
    yield from start_server(tmp_path / "small", MAX_FILE_SIZE_MB="0.01", AUTH_RATE_LIMIT_PER_MINUTE="10000")


def test_too_large_files_exit_6_with_the_limit(chitram: CliRunner, home: CliHome, small_server: Server) -> None:
    key = create_key(small_server.base_url, register(small_server.base_url))
    files = corpus_copy(home, PNG, "icc_profile_big.jpg", JPEG)
    result = chitram("upload", *files, CHITRAM_URL=small_server.base_url, CHITRAM_API_KEY=key)
    assert result.returncode == 6
    assert result.stderr.strip().splitlines() == [
        f"chitram: {PNG}: file too large: the limit is 10.2 KiB",
        "chitram: icc_profile_big.jpg: file too large: the limit is 10.2 KiB",
        "chitram: 2 of 3 files failed",
    ]
    assert len(links(result.stdout)) == 1


@pytest.fixture
def strict_server(tmp_path: Path) -> Iterator[Server]:
    yield from start_server(tmp_path / "strict", RATE_LIMIT_PER_MINUTE="1", AUTH_RATE_LIMIT_PER_MINUTE="10000")


def test_rate_limited_upload_exits_7_with_the_wait(chitram: CliRunner, home: CliHome, strict_server: Server) -> None:
    key = create_key(strict_server.base_url, register(strict_server.base_url))
    result = chitram("upload", *corpus_copy(home, JPEG, PNG), CHITRAM_URL=strict_server.base_url, CHITRAM_API_KEY=key)
    assert result.returncode == 7
    first, summary = result.stderr.strip().splitlines()
    match = re.fullmatch(rf"chitram: {PNG}: rate limited; try again in (\d+) s", first)
    assert match, first
    assert 0 < int(match.group(1)) <= 60
    assert summary == "chitram: 1 of 2 files failed"
    assert len(links(result.stdout)) == 1


@pytest.fixture
def quota_server(tmp_path: Path) -> Iterator[Server]:
    yield from start_server(tmp_path / "quota", USER_QUOTA_IMAGES="1", AUTH_RATE_LIMIT_PER_MINUTE="10000")


def test_a_full_quota_exits_5_with_the_figures(chitram: CliRunner, home: CliHome, quota_server: Server) -> None:
    key = create_key(quota_server.base_url, register(quota_server.base_url))
    result = chitram("upload", *corpus_copy(home, JPEG, PNG), CHITRAM_URL=quota_server.base_url, CHITRAM_API_KEY=key)
    assert result.returncode == 5
    first, summary = result.stderr.strip().splitlines()
    assert first.startswith(f"chitram: {PNG}: quota exceeded (1 of 1 images): ")
    assert summary == "chitram: 1 of 2 files failed"
    assert len(links(result.stdout)) == 1
