"""Plain functions that make test images and upload them."""

from __future__ import annotations

import io
import itertools
from typing import Any

import httpx
from PIL import Image

UPLOAD_URL = "/api/v1/images/upload"


def make_jpeg(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30), **save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "JPEG", quality=90, **save)
    return buffer.getvalue()


_distinct_colours = itertools.count(1)


def make_distinct_jpeg(width: int = 64, height: int = 48) -> bytes:
    """A JPEG whose content no other call gives: identical uploads share one stored original (ADR 0014)."""
    number = next(_distinct_colours)
    # Steps far apart, so JPEG quantisation never makes two colours one.
    colour = ((number * 37) % 256, (number * 91) % 256, (number * 53 + number // 256 * 29) % 256)
    return make_jpeg(width, height, colour)


def make_png(width: int = 40, height: int = 30, mode: str = "RGBA") -> bytes:
    buffer = io.BytesIO()
    color = (10, 120, 200, 128) if mode == "RGBA" else (10, 120, 200)
    Image.new(mode, (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


async def upload(
    client: httpx.AsyncClient,
    body: bytes,
    filename: str = "photo.jpg",
    content_type: str | None = "application/octet-stream",
    **kwargs: Any,
) -> httpx.Response:
    part = (filename, body, content_type) if content_type is not None else (filename, body)
    return await client.post(UPLOAD_URL, files={"file": part}, **kwargs)


async def upload_ok(
    client: httpx.AsyncClient, body: bytes | None = None, filename: str = "photo.jpg"
) -> dict[str, Any]:
    response = await upload(client, body if body is not None else make_distinct_jpeg(), filename)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def token_of(created: dict[str, Any]) -> dict[str, str]:
    """The header that proves an anonymous upload's delete token."""
    return {"X-Delete-Token": str(created["delete_token"])}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(client: httpx.AsyncClient, email: str, password: str = "correct horse battery") -> dict[str, Any]:
    response = await client.post("/api/v1/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    registered: dict[str, Any] = response.json()
    return registered
