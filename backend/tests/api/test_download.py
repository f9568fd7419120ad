"""Direct links: the original bytes with caching, ranges and strict headers."""

from __future__ import annotations

import io
import random
import urllib.parse

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from app.config import Settings
from app.services.storage import StorageBackend
from tests.api.apps import running_app
from tests.api.helpers import original_key_of
from tests.api.near_copies import comparable, count_routed, warm_near_copy
from tests.factories import make_jpeg, token_of, upload_ok


@pytest.fixture
async def stored(client: httpx.AsyncClient) -> tuple[dict[str, str], bytes]:
    body = make_jpeg(800, 600)
    created = await upload_ok(client, body, filename="sunset.jpg")
    return created, body


async def test_download_streams_the_original_with_strict_headers(
    client: httpx.AsyncClient, stored: tuple[dict[str, str], bytes]
) -> None:
    created, body = stored
    response = await client.get(created["url"])
    assert response.status_code == 200
    assert response.content == body
    headers = response.headers
    assert headers["content-type"] == "image/jpeg"
    assert headers["content-length"] == str(len(body))
    assert headers["etag"] == f'"{created["checksum"]}"'
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert headers["accept-ranges"] == "bytes"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert headers["content-disposition"].startswith("inline")
    assert 'filename="sunset.jpg"' in headers["content-disposition"]


async def test_head_gives_the_headers_without_the_body(
    client: httpx.AsyncClient, stored: tuple[dict[str, str], bytes]
) -> None:
    created, body = stored
    response = await client.head(created["url"])
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(body))
    assert response.headers["etag"] == f'"{created["checksum"]}"'


async def test_matching_if_none_match_is_304_without_body(
    client: httpx.AsyncClient, stored: tuple[dict[str, str], bytes]
) -> None:
    created, _ = stored
    etag = (await client.get(created["url"])).headers["etag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = await client.get(created["url"], headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == etag
    stale = await client.get(created["url"], headers={"If-None-Match": '"not-it"'})
    assert stale.status_code == 200


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, None), ("bytes=-50", -50, None), ("bytes=5-5", 5, 5)],
)
async def test_single_range_is_206_with_exactly_those_bytes(
    client: httpx.AsyncClient, stored: tuple[dict[str, str], bytes], range_header: str, start: int, end: int | None
) -> None:
    created, body = stored
    response = await client.get(created["url"], headers={"Range": range_header})
    assert response.status_code == 206
    expected = body[start:] if end is None else body[start : end + 1]
    assert response.content == expected
    first = start if start >= 0 else len(body) + start
    assert response.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{len(body)}"
    assert response.headers["content-length"] == str(len(expected))


async def test_range_end_past_the_file_is_clamped(
    client: httpx.AsyncClient, stored: tuple[dict[str, str], bytes]
) -> None:
    created, body = stored
    response = await client.get(created["url"], headers={"Range": f"bytes=10-{len(body) * 2}"})
    assert response.status_code == 206
    assert response.content == body[10:]


async def test_unsatisfiable_range_is_416(client: httpx.AsyncClient, stored: tuple[dict[str, str], bytes]) -> None:
    created, body = stored
    response = await client.get(created["url"], headers={"Range": f"bytes={len(body)}-"})
    assert response.status_code == 416
    assert response.json()["detail"]["code"] == "RANGE_NOT_SATISFIABLE"
    assert response.headers["content-range"] == f"bytes */{len(body)}"


async def test_multiple_or_malformed_ranges_get_the_whole_file(
    client: httpx.AsyncClient, stored: tuple[dict[str, str], bytes]
) -> None:
    created, body = stored
    for header in ("bytes=0-1,5-6", "bytes=abc", "items=0-5", "bytes=9-3"):
        response = await client.get(created["url"], headers={"Range": header})
        assert response.status_code == 200, header
        assert response.content == body


async def test_if_range_with_another_etag_ignores_the_range(
    client: httpx.AsyncClient, stored: tuple[dict[str, str], bytes]
) -> None:
    created, body = stored
    response = await client.get(created["url"], headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert response.status_code == 200
    assert response.content == body


async def test_unicode_name_gets_an_rfc6266_filename_star(client: httpx.AsyncClient) -> None:
    created = await upload_ok(client, make_jpeg(), filename="Café 写真.jpg")
    disposition = (await client.get(created["url"])).headers["content-disposition"]
    assert disposition.startswith("inline;")
    assert "filename*=UTF-8''" in disposition
    encoded = disposition.split("filename*=UTF-8''", 1)[1].split(";", 1)[0]
    assert urllib.parse.unquote(encoded) == "Café 写真.jpg"
    ascii_part = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert ascii_part.isascii()


async def test_download_of_unknown_image_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/images/3f1c6a4e-0000-4000-8000-000000000000/file")
    assert response.status_code == 404
    assert response.json()["detail"]["code"] == "IMAGE_NOT_FOUND"


# --- hot copies: small files are kept in memory after the first download (ADR 0011) --------------


def noise_jpeg(width: int, height: int) -> bytes:
    """A JPEG that does not compress: 1600x1200 of noise is well over the 1 MiB a hot copy may hold."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), random.Random(7).randbytes(width * height * 3)).save(
        buffer, "JPEG", quality=95
    )
    return buffer.getvalue()


async def remove_object_behind_the_services_back(app: FastAPI, created: dict[str, str]) -> None:
    storage: StorageBackend = app.state.storage
    await storage.delete(original_key_of(created))


async def test_a_downloaded_small_file_is_served_from_memory_afterwards(
    app: FastAPI, client: httpx.AsyncClient, stored: tuple[dict[str, str], bytes]
) -> None:
    created, body = stored
    assert (await client.get(created["url"])).content == body
    # Only to show that the copy is used: the next answers come without asking storage.
    await remove_object_behind_the_services_back(app, created)
    again = await client.get(created["url"])
    assert (again.status_code, again.content) == (200, body)
    ranged = await client.get(created["url"], headers={"Range": "bytes=10-19"})
    assert (ranged.status_code, ranged.content) == (206, body[10:20])
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(body)}"


async def test_a_deleted_image_is_404_even_when_its_file_was_hot(
    client: httpx.AsyncClient, stored: tuple[dict[str, str], bytes]
) -> None:
    created, body = stored
    for _ in range(2):
        assert (await client.get(created["url"])).content == body
    assert (await client.delete(f"/api/v1/images/{created['id']}", headers=token_of(created))).status_code == 204
    response = await client.get(created["url"])
    assert (response.status_code, response.json()["detail"]["code"]) == (404, "IMAGE_NOT_FOUND")


async def test_a_file_over_one_mib_is_streamed_every_time_never_held(app: FastAPI, client: httpx.AsyncClient) -> None:
    body = noise_jpeg(1600, 1200)
    assert len(body) > 1024 * 1024
    created = await upload_ok(client, body)
    assert (await client.get(created["url"])).content == body
    await remove_object_behind_the_services_back(app, created)
    assert (await client.get(created["url"])).status_code == 404


async def test_without_a_file_cache_small_files_stream_with_ranges(settings: Settings) -> None:
    async with running_app(settings.model_copy(update={"file_cache_mb": 0})) as (app, client):
        body = make_jpeg(800, 600)
        created = await upload_ok(client, body)
        assert (await client.get(created["url"])).content == body
        ranged = await client.get(created["url"], headers={"Range": "bytes=-50"})
        assert (ranged.status_code, ranged.content) == (206, body[-50:])
        await remove_object_behind_the_services_back(app, created)
        assert (await client.get(created["url"])).status_code == 404


async def test_a_direct_link_answered_before_routing_is_the_routes_answer(
    app: FastAPI, client: httpx.AsyncClient, stored: tuple[dict[str, str], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain downloads of a near-held image with a hot file skip routing (ADR 0011): the same answer."""
    created, body = stored
    await warm_near_copy(app, client, created["url"], created["id"])
    reached_router = count_routed(app, monkeypatch)
    early = await client.get(created["url"])
    assert reached_router.paths == []
    # The same id spelt in capitals is not a near-copy key: this one is answered by the route.
    routed = await client.get(f"/api/v1/images/{created['id'].upper()}/file")
    assert len(reached_router.paths) == 1
    assert comparable(early) == comparable(routed)
    assert (early.status_code, early.content) == (200, body)
    # Ranges and validators are always the route's.
    ranged = await client.get(created["url"], headers={"Range": "bytes=0-9"})
    assert (ranged.status_code, ranged.content) == (206, body[:10])
    assert (await client.get(created["url"], headers={"If-None-Match": early.headers["etag"]})).status_code == 304
