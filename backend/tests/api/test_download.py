"""Direct links: the original bytes with caching, ranges and strict headers."""

from __future__ import annotations

import urllib.parse

import httpx
import pytest

from tests.factories import make_jpeg, upload_ok


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
