"""Per-account quotas: usage kept with the rows, enforced under concurrency, shown to the user (ADR 0017)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx

from app.config import Settings
from tests.api.apps import running_app
from tests.conftest import _truncate_tables
from tests.error_checks import without_request_id
from tests.factories import bearer, make_distinct_jpeg, register, upload
from tests.servers import app_servers

USAGE_URL = "/api/v1/users/me/usage"
START_TIMEOUT_SECONDS = 120  # two imports of the app side by side on a busy 2-core machine


async def test_usage_counts_uploads_and_deletes(client: httpx.AsyncClient) -> None:
    account = await register(client, "usage@example.com")
    headers = bearer(account["access_token"])
    assert (await client.get(USAGE_URL, headers=headers)).json() == {
        "used_bytes": 0,
        "used_images": 0,
        "quota_bytes": None,
        "quota_images": None,
    }
    body = make_distinct_jpeg()
    first = (await upload(client, body, headers=headers)).json()
    # The same content again: stored once, but it is the user's second image and counts again.
    second = (await upload(client, body, headers=headers)).json()
    usage = (await client.get(USAGE_URL, headers=headers)).json()
    assert (usage["used_bytes"], usage["used_images"]) == (first["file_size"] + second["file_size"], 2)
    assert (await client.delete(f"/api/v1/images/{first['id']}", headers=headers)).status_code == 204
    usage = (await client.get(USAGE_URL, headers=headers)).json()
    assert (usage["used_bytes"], usage["used_images"]) == (second["file_size"], 1)
    anonymous = await upload(client, make_distinct_jpeg())
    assert anonymous.status_code == 201  # no account, no quota
    assert (await client.get(USAGE_URL, headers=headers)).json()["used_images"] == 1


async def test_the_bytes_quota_refuses_with_the_figures_and_keeps_nothing(settings: Settings) -> None:
    probe = make_distinct_jpeg(300, 200)
    async with running_app(settings) as (_, client):
        size = (await upload(client, probe)).json()["file_size"]
    limited = settings.model_copy(update={"user_quota_bytes": 2 * size + size // 2})
    async with running_app(limited) as (_app, client):
        account = await register(client, "bytes@example.com")
        headers = bearer(account["access_token"])
        for _ in range(2):
            assert (await upload(client, probe, headers=headers)).status_code == 201
        refused = await upload(client, probe, headers=headers)
        assert refused.status_code == 403
        detail = refused.json()["detail"]
        assert detail["code"] == "QUOTA_EXCEEDED"
        assert without_request_id(detail["details"]) == {
            "quota_bytes": 2 * size + size // 2,
            "quota_images": None,
            "used_bytes": 2 * size,
            "used_images": 2,
            "file_size": size,
        }
        listed = (await client.get("/api/v1/users/me/images", headers=headers)).json()["items"]
        assert len(listed) == 2
        usage = (await client.get(USAGE_URL, headers=headers)).json()
        assert usage == {
            "used_bytes": 2 * size,
            "used_images": 2,
            "quota_bytes": 2 * size + size // 2,
            "quota_images": None,
        }


async def test_a_full_account_is_refused_and_deleting_makes_room(settings: Settings) -> None:
    limited = settings.model_copy(update={"user_quota_images": 1})
    async with running_app(limited) as (_, client):
        account = await register(client, "full@example.com")
        headers = bearer(account["access_token"])
        kept = await upload(client, make_distinct_jpeg(), headers=headers)
        assert kept.status_code == 201
        refused = await upload(client, make_distinct_jpeg(), headers=headers)
        assert refused.status_code == 403
        assert refused.json()["detail"]["details"]["used_images"] == 1
        assert "images" in refused.json()["detail"]["message"]
        assert (await client.delete(f"/api/v1/images/{kept.json()['id']}", headers=headers)).status_code == 204
        assert (await upload(client, make_distinct_jpeg(), headers=headers)).status_code == 201


async def test_ten_parallel_uploads_over_two_processes_never_pass_the_quota(settings: Settings, tmp_path: Path) -> None:
    limited = settings.model_copy(update={"user_quota_images": 3, "upload_concurrency_limit": 20})
    # Servers of their own: the `app` fixture's clean-up does not run, so the rows go here.
    try:
        with app_servers(limited, tmp_path, 2, start_timeout=START_TIMEOUT_SECONDS) as servers:
            urls = [url for url, _ in servers]
            async with (
                httpx.AsyncClient(base_url=urls[0], timeout=60) as first,
                httpx.AsyncClient(base_url=urls[1], timeout=60) as second,
            ):
                account = await register(first, "parallel@example.com")
                headers = bearer(account["access_token"])
                bodies = [make_distinct_jpeg(200 + number, 150) for number in range(10)]
                answers = await asyncio.gather(
                    *(
                        upload(first if number % 2 else second, body, headers=headers)
                        for number, body in enumerate(bodies)
                    )
                )
                outcomes = Counter(
                    answer.status_code if answer.status_code == 201 else answer.json()["detail"]["code"]
                    for answer in answers
                )
                assert outcomes == {201: 3, "QUOTA_EXCEEDED": 7}
                listed = (await first.get("/api/v1/users/me/images", headers=headers)).json()["items"]
                usage = (await second.get(USAGE_URL, headers=headers)).json()
                assert (len(listed), usage["used_images"]) == (3, 3)
                stored = sum(answer.json()["file_size"] for answer in answers if answer.status_code == 201)
                assert usage["used_bytes"] == stored
    finally:
        await _truncate_tables(settings.database_url)
