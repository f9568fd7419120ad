"""The OpenAPI description keeps its word: schemathesis runs every operation against a real server.

Every answer must have a documented status, content type, headers and body, and none may be a 5xx.
The server is `python -m app` (uvicorn) on the suite's PostgreSQL, Redis and moto S3, with rate
limits out of the way (they have tests of their own). Schemathesis runs as its command-line tool:
a failure reads as its own report, with a curl line per failing case. (Its pytest loader for a
schema from a fixture, `schemathesis.pytest.from_fixture`, does not run under pytest 9.)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.conftest import _truncate_tables
from tests.factories import bearer, make_jpeg, make_png
from tests.servers import app_server_env, free_port, running_app_server, settings_env

PASSWORD = "correct horse battery"
# What every answer is held to. Left out: positive_data_acceptance, since a schema-valid request
# can rightly fail (an opaque `cursor` that no page made, bytes that are no image).
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
    "use_after_free",
    "ensure_resource_availability",
)
# Generated cases per operation in the fuzzing phase; the coverage and stateful phases add theirs.
MAX_EXAMPLES = 40
RUN_TIMEOUT_SECONDS = 180
# Per way of delivering files, the operations to run: everything with the default, and with
# presigned redirects the file routes again, whose answers are then 302s.
OPERATIONS_BY_FILE_DELIVERY = {
    "stream": [],
    "presigned-redirect": ["--include-path-regex", "/(file|thumbnail)$"],
}


@pytest.fixture(params=sorted(OPERATIONS_BY_FILE_DELIVERY))
def file_delivery(request: pytest.FixtureRequest) -> str:
    delivery: str = request.param
    return delivery


@pytest.fixture
def live_server(settings: Settings, file_delivery: str, tmp_path: Path) -> Iterator[str]:
    """The app under uvicorn with the suite's settings; its rows are gone again afterwards."""
    served = settings.model_copy(update={"file_delivery": file_delivery})
    env = app_server_env(**settings_env(served), HOST="127.0.0.1", PORT=str(free_port()))
    try:
        with running_app_server(env, tmp_path / "server.log") as base_url:
            yield base_url
    finally:
        asyncio.run(_truncate_tables(settings.database_url))


def _register(client: httpx.Client, email: str) -> str:
    response = client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    token: str = response.json()["access_token"]
    return token


def _upload(client: httpx.Client, name: str, body: bytes, token: str | None = None) -> str:
    headers = bearer(token) if token else None
    response = client.post("/api/v1/images/upload", files={"file": (name, body)}, headers=headers)
    assert response.status_code == 201, response.text
    image_id: str = response.json()["id"]
    return image_id


def _wait_for_thumbnails(client: httpx.Client, image_ids: list[str], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    for image_id in image_ids:
        while not client.get(f"/api/v1/images/{image_id}").json()["thumbnail_ready"]:
            assert time.monotonic() < deadline, f"the thumbnail of {image_id} was not made in {timeout} s"
            time.sleep(0.05)


def schemathesis_config(token: str, image_ids: list[str]) -> str:
    """The run's configuration (TOML): deterministic, authenticated, and given images that exist.

    The token goes to the operations that declare the OAuth2 scheme, so owner-only routes answer
    as they do for their owner. Paths with `{image_id}` get a real image half the time (a random id
    otherwise), so 200, 206, 304 and 416 are reached as well as 404. Redirects are checked, not
    followed: where they lead is the object store's business.
    """
    # json.dumps spells strings and lists of them as TOML does.
    return f"""\
max-redirects = 0

[checks]
enabled = false
{chr(10).join(f"{check}.enabled = true" for check in CHECKS)}

[generation]
deterministic = true
max-examples = {MAX_EXAMPLES}

[cache]
enabled = false

[auth.openapi.OAuth2PasswordBearer]
bearer = {json.dumps(token)}

# An optional multipart text field (the upload's `visibility`, `expires_in`) sent as an empty array is no
# part at all, the same bytes as leaving it out, which the API rightly accepts: the one negative case no
# server can refuse. The upload's other refusals are tested in tests/api.
[[operations]]
include-path = "/api/v1/images/upload"
checks.negative_data_rejection.enabled = false

[dictionaries.images]
values = {json.dumps(image_ids)}

[parameters]
"path.image_id" = {{ dictionary = "images", probability = 0.5 }}
"""


def test_every_answer_matches_the_openapi_description(live_server: str, file_delivery: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=live_server) as client:
        token = _register(client, "fuzzer@example.com")
        other_token = _register(client, "other@example.com")
        # The caller's own image (deleted along the way), another account's and an anonymous one:
        # deleting either of the last two is refused with a 403 however often it is tried.
        image_ids = [
            _upload(client, "own.jpg", make_jpeg(400, 300), token),
            _upload(client, "other.png", make_png(320, 200), other_token),
            _upload(client, "anonymous.jpg", make_jpeg(50, 40)),
        ]
        _wait_for_thumbnails(client, image_ids)
    config = tmp_path / "schemathesis.toml"
    config.write_text(schemathesis_config(token, image_ids))

    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run"]
    command += [f"{live_server}/openapi.json", "--workers", "1"]
    command += OPERATIONS_BY_FILE_DELIVERY[file_delivery]
    # Run in tmp_path: schemathesis keeps a little state in its working directory.
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)
    if run.returncode != 0:
        pytest.fail(
            f"schemathesis found answers that break the OpenAPI description (server log: {tmp_path / 'server.log'})"
            f"\n\n{run.stdout}\n{run.stderr}",
            pytrace=False,
        )
