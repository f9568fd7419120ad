"""The ShareX uploader and the shell lines a new key comes with, run against a real server.

The ShareX test does what ShareX does with a `.sxcu`: send the request it describes (method, URL,
headers, the file in the multipart field `FileFormName`), then read `URL`, `ThumbnailURL` or
`ErrorMessage` by replacing each `{json:path}` with that JSON path into the response body.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from app.services.uploader_configs import sharex_config, sharex_file_name, shell_snippet
from tests.cli.conftest import Server, create_key, register
from tests.conftest import CORPUS_DIR, corpus_bytes

PHOTO = "flower.jpg"  # 480x360: its 300 px variant is a real resize

SHAREX_JSON_SYNTAX = re.compile(r"\{json:([^{}]+)\}")


def json_path(document: Any, path: str) -> Any:
    """ShareX's `{json:a.b[0].c}`: a JSON path into the body (it prefixes `$.` and selects one token)."""
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        document = document[int(index)] if index else document[name]
    return document


def resolve_sharex(template: str, body: str) -> str:
    """A ShareX response template resolved against a response body."""
    document = json.loads(body)
    return SHAREX_JSON_SYNTAX.sub(lambda match: str(json_path(document, match.group(1))), template)


def replay_sharex(config: dict[str, Any], file_name: str, content: bytes) -> httpx.Response:
    """The request ShareX sends for a custom uploader with a multipart body."""
    assert config["Body"] == "MultipartFormData"
    return httpx.request(
        config["RequestMethod"],
        config["RequestURL"],
        headers=config.get("Headers", {}),
        params=config.get("Parameters", {}),
        data=config.get("Arguments", {}),
        files={config["FileFormName"]: (file_name, content, "image/jpeg")},
    )


@pytest.fixture
def api_key(server: Server) -> str:
    return create_key(server.base_url, register(server.base_url))


def test_sharex_uploader_uploads_and_its_url_serves_the_image(server: Server, api_key: str, tmp_path: Path) -> None:
    sxcu = tmp_path / sharex_file_name("Chitram (test machine)")
    sxcu.write_text(json.dumps(sharex_config(server.base_url + "/", api_key, "Chitram (test machine)")))
    config = json.loads(sxcu.read_text())  # what ShareX imports
    assert sxcu.name == "Chitram (test machine).sxcu"
    assert config["DestinationType"] == "ImageUploader"

    response = replay_sharex(config, PHOTO, corpus_bytes(PHOTO))
    assert response.status_code == 201, response.text
    url = resolve_sharex(config["URL"], response.text)
    assert url == f"{server.base_url}/api/v1/images/{response.json()['id']}/file"
    download = httpx.get(url)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == response.json()["checksum"]
    with Image.open(io.BytesIO(download.content)) as picture:
        assert picture.size == (480, 360)

    thumbnail = httpx.get(resolve_sharex(config["ThumbnailURL"], response.text))
    assert thumbnail.status_code == 200
    with Image.open(io.BytesIO(thumbnail.content)) as picture:
        assert picture.size == (300, 225)


def test_sharex_error_message_reads_the_servers_reason(server: Server, api_key: str) -> None:
    config = sharex_config(server.base_url, api_key, "Chitram")
    not_an_image = replay_sharex(config, "notes.jpg", b"these are not the bytes of an image")
    assert not_an_image.status_code == 400
    assert resolve_sharex(config["ErrorMessage"], not_an_image.text) == not_an_image.json()["detail"]["message"]
    assert "{json" not in resolve_sharex(config["ErrorMessage"], not_an_image.text)

    wrong_key = sharex_config(server.base_url, api_key[:-4] + "AAAA", "Chitram")
    refused = replay_sharex(wrong_key, PHOTO, corpus_bytes(PHOTO))
    assert refused.status_code == 401
    message = resolve_sharex(wrong_key["ErrorMessage"], refused.text)
    assert message == refused.json()["detail"]["message"]
    assert message.strip()


def test_sharex_file_name_is_safe_to_save() -> None:
    assert sharex_file_name("Chitram (laptop)") == "Chitram (laptop).sxcu"
    assert sharex_file_name("../../etc/passwd") == "etc_passwd.sxcu"
    assert sharex_file_name("///") == "Chitram.sxcu"


def shell_line(snippet: str, starts_with: str) -> str:
    [line] = [line for line in snippet.splitlines() if line.startswith(starts_with)]
    return line


def test_shell_snippet_lines_upload_and_print_the_link(server: Server, api_key: str, tmp_path: Path) -> None:
    snippet = shell_snippet(server.base_url, api_key)
    # Flameshot's capture is stood in for by a `flameshot` that writes a picture to stdout, as `gui --raw` does.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "flameshot"
    fake.write_text(f'#!/bin/sh\n[ "$1 $2" = "gui --raw" ] && exec cat "{CORPUS_DIR / "hopper.png"}"\nexit 1\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    shutil.copy(CORPUS_DIR / "hopper.png", tmp_path / "picture.png")  # the name the curl line uses
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}

    flameshot = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell_line(snippet, "flameshot ")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert flameshot.returncode == 0, flameshot.stderr
    link = flameshot.stdout.strip()
    assert re.fullmatch(rf"{re.escape(server.base_url)}/api/v1/images/[0-9a-f-]{{36}}/file", link)
    metadata = httpx.get(link.removesuffix("/file")).json()
    assert (metadata["filename"], metadata["content_type"]) == ("screenshot.png", "image/png")
    assert hashlib.sha256(httpx.get(link).content).hexdigest() == metadata["checksum"]

    curl = subprocess.run(
        ["bash", "-c", shell_line(snippet, "curl ")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert curl.returncode == 0, curl.stderr
    uploaded = json.loads(curl.stdout)
    assert uploaded["filename"] == "picture.png"
    assert httpx.get(server.base_url + uploaded["url"]).status_code == 200


def test_shell_snippet_reports_a_refusal_instead_of_a_link(server: Server, tmp_path: Path) -> None:
    wrong_key = "chk_0123456789abcdef_" + "A" * 43
    snippet = shell_snippet(server.base_url, wrong_key)
    shutil.copy(CORPUS_DIR / PHOTO, tmp_path / "picture.png")
    line = shell_line(snippet, "flameshot ").replace("flameshot gui --raw", "cat picture.png")
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", line], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert result.stdout == ""  # no link that looks like one
    refusal = httpx.post(
        f"{server.base_url}/api/v1/images/upload",
        headers={"X-API-Key": wrong_key},
        files={"file": ("picture.png", corpus_bytes("hopper.png"))},
    )
    assert refusal.json()["detail"]["message"] in result.stderr
