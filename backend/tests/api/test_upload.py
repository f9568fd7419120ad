"""Uploading: what a client gets back for good files and for every kind of bad input."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from tests.api.helpers import bucket_keys, image_row_count, original_key_of
from tests.conftest import TEST_CLIENT_ADDRESS, corpus_bytes, load_corpus
from tests.factories import UPLOAD_URL, make_jpeg, make_png, upload
from tests.image_checks import frames_pixels, icc_profile, revealing_metadata

CORPUS = load_corpus()
FIVE_MIB = 5 * 1024 * 1024


@pytest.mark.parametrize("case", CORPUS, ids=[case["file"] for case in CORPUS])
async def test_upload_answers_each_corpus_file_as_the_manifest_says(
    client: httpx.AsyncClient, settings: Settings, case: dict[str, Any]
) -> None:
    body = corpus_bytes(case["file"])
    response = await upload(client, body, filename=case["file"])
    expected = case["expected"]
    assert response.status_code == expected["status"], response.text
    if expected["code"]:
        assert response.json()["detail"]["code"] == expected["code"]
        assert bucket_keys(settings) == set()
        return
    created = response.json()
    assert created["content_type"] == f"image/{expected['stored_format']}"
    assert (created["width"], created["height"]) == (case["width"], case["height"])
    # What is served is the picture without its metadata: the same pixels, frame for frame, and
    # checksum, size and ETag describe exactly the bytes served.
    download = await client.get(created["url"])
    stored = download.content
    assert_same_picture(stored, body, case)
    assert created["file_size"] == len(stored) == int(download.headers["content-length"])
    assert created["checksum"] == hashlib.sha256(stored).hexdigest()
    assert download.headers["etag"] == f'"{created["checksum"]}"'
    assert revealing_metadata(stored) == {}
    if (case.get("metadata") or {}).get("icc"):
        assert icc_profile(stored) == icc_profile(body)


def assert_same_picture(stored: bytes, body: bytes, case: dict[str, Any]) -> None:
    """The stored file shows what the upload showed (for MPO, its primary picture: ADR 0013)."""
    stored_frames = frames_pixels(stored)
    if case["decodes"]:
        assert stored_frames == frames_pixels(body)[: len(stored_frames)]
    elif case["first_frame_decodes"]:
        # A secondary picture that never decoded was dropped with the index that pointed at it.
        assert stored_frames == frames_pixels(body, frames=1)
    else:
        # Pillow refused the upload only for its text chunks (dropped unread): the picture decodes.
        assert len(stored_frames) == 1


async def test_upload_returns_metadata_and_a_working_direct_link(client: httpx.AsyncClient, app: FastAPI) -> None:
    body = make_jpeg(320, 200)
    response = await upload(client, body, filename="holiday.jpg", content_type="image/jpeg")
    assert response.status_code == 201
    created = response.json()
    assert set(created) == {
        "id", "filename", "content_type", "file_size", "width", "height", "checksum", "url", "created_at",
        "delete_token", "thumbnail_status", "thumbnail_ready", "thumbnail_url", "placeholder", "variant_widths",
        "visibility", "expires_at", "page_url",
    }  # fmt: skip
    assert (created["visibility"], created["expires_at"]) == ("unlisted", None)
    assert created["filename"] == "holiday.jpg"
    # The widths below its own 320 px a `srcset` may name; the sketch comes with the thumbnail.
    assert (created["variant_widths"], created["placeholder"]) == ([150, 300], None)
    assert created["content_type"] == "image/jpeg"
    assert (created["width"], created["height"]) == (320, 200)
    assert created["checksum"] == hashlib.sha256(body).hexdigest()
    assert created["url"] == f"/api/v1/images/{created['id']}/file"
    assert datetime.fromisoformat(created["created_at"]).utcoffset() is not None
    assert (await client.get(created["url"])).content == body
    async with app.state.sessionmaker() as session:
        from app.models import Image

        row = await session.get(Image, __import__("uuid").UUID(created["id"]))
        assert row is not None
        assert row.upload_ip == TEST_CLIENT_ADDRESS[0]
        assert row.storage_key == original_key_of(created)


async def test_upload_stores_png_under_detected_type_even_when_named_jpg(client: httpx.AsyncClient) -> None:
    response = await upload(client, make_png(), filename="really-a-png.jpg")
    assert response.status_code == 201
    assert response.json()["content_type"] == "image/png"
    download = await client.get(response.json()["url"])
    assert download.headers["content-type"] == "image/png"


async def test_upload_at_exactly_the_size_limit_is_accepted_and_stored_without_its_padding(
    client: httpx.AsyncClient,
) -> None:
    body = corpus_bytes("hopper.jpg")
    padded = body + b"\0" * (FIVE_MIB - len(body))
    response = await upload(client, padded)
    assert response.status_code == 201, response.text
    # What follows the picture's end is no part of it: stripping keeps the picture only.
    stored = (await client.get(response.json()["url"])).content
    assert response.json()["file_size"] == len(stored) < len(body)
    assert frames_pixels(stored) == frames_pixels(body)


async def test_upload_one_byte_over_the_limit_is_413_with_the_limit(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    body = corpus_bytes("hopper.jpg")
    padded = body + b"\0" * (FIVE_MIB + 1 - len(body))
    response = await upload(client, padded)
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert detail["code"] == "FILE_TOO_LARGE"
    assert detail["details"]["max_size_bytes"] == FIVE_MIB
    assert bucket_keys(settings) == set()


async def test_upload_refuses_huge_body_from_content_length_without_reading_it(app: FastAPI) -> None:
    """The 413 comes before the body is consumed: the stream below would take minutes to send."""
    sent = 0

    async def endless_body() -> Any:
        nonlocal sent
        head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
        sent += len(head)
        yield head
        chunk = b"\xff" * 65536
        for _ in range(100_000):  # 6.5 GB if anyone read it all
            sent += len(chunk)
            yield chunk

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as raw:
        headers = {"content-type": "multipart/form-data; boundary=b", "content-length": str(6 * 1024**3)}
        response = await raw.post(UPLOAD_URL, content=endless_body(), headers=headers)
    assert response.status_code == 413
    assert response.json()["detail"]["code"] == "FILE_TOO_LARGE"
    assert sent < 1024 * 1024


async def test_upload_stops_reading_a_chunked_body_once_past_the_limit(app: FastAPI) -> None:
    sent = 0

    async def endless_body() -> Any:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
        chunk = b"\xff" * 65536
        for _ in range(100_000):
            sent += len(chunk)
            yield chunk

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as raw:
        headers = {"content-type": "multipart/form-data; boundary=b"}  # no Content-Length: chunked
        response = await raw.post(UPLOAD_URL, content=endless_body(), headers=headers)
    assert response.status_code == 413
    assert sent < FIVE_MIB + 2 * 1024 * 1024


async def test_empty_file_is_invalid_request(client: httpx.AsyncClient) -> None:
    response = await upload(client, b"", filename="empty.jpg")
    assert response.status_code == 400
    assert response.json()["detail"]["code"] == "INVALID_REQUEST"


@pytest.mark.parametrize(
    ("declared", "status", "code"),
    [
        ("image/png", 400, "INVALID_FILE_FORMAT"),  # JPEG bytes declared PNG
        ("text/html", 400, "INVALID_FILE_FORMAT"),
        ("image/gif", 400, "INVALID_FILE_FORMAT"),
        ("image/jpeg", 201, None),
        ("image/jpg", 201, None),
        ("application/octet-stream", 201, None),
        (None, 201, None),
    ],
)
async def test_declared_content_type_must_not_contradict_the_bytes(
    client: httpx.AsyncClient, declared: str | None, status: int, code: str | None
) -> None:
    response = await upload(client, make_jpeg(), content_type=declared)
    assert response.status_code == status, response.text
    if code:
        assert response.json()["detail"]["code"] == code


async def test_text_file_is_invalid_file_format(client: httpx.AsyncClient) -> None:
    response = await upload(client, b"hello, not an image\n" * 10, filename="notes.jpg")
    assert response.status_code == 400
    assert response.json()["detail"]["code"] == "INVALID_FILE_FORMAT"


async def test_missing_file_field_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post(UPLOAD_URL, files={"picture": ("a.jpg", make_jpeg(), "image/jpeg")})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["code"] == "VALIDATION_ERROR"
    assert detail["details"]["errors"][0]["loc"] == ["body", "file"]


async def test_json_body_instead_of_multipart_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post(UPLOAD_URL, json={"file": "abc"})
    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "VALIDATION_ERROR"


async def test_malformed_multipart_is_invalid_request(client: httpx.AsyncClient) -> None:
    response = await client.post(
        UPLOAD_URL,
        content=b"--zzz\r\nthis is not a header block",
        headers={"content-type": "multipart/form-data; boundary=zzz"},
    )
    assert response.status_code in (400, 422)
    assert response.json()["detail"]["code"] in ("INVALID_REQUEST", "VALIDATION_ERROR")


async def test_two_files_in_one_request_are_refused(client: httpx.AsyncClient) -> None:
    files = [("file", ("a.jpg", make_jpeg(), "image/jpeg")), ("file", ("b.jpg", make_jpeg(), "image/jpeg"))]
    response = await client.post(UPLOAD_URL, files=files)
    assert response.status_code == 400
    assert response.json()["detail"]["code"] == "INVALID_REQUEST"


@pytest.mark.parametrize(
    ("raw_name", "stored_name"),
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("..\\..\\windows\\win.ini.jpg", "win.ini.jpg"),
        ("/absolute/path/photo.jpg", "photo.jpg"),
        ("फोटो.jpg", "फोटो.jpg"),
        ("写真 1.jpg", "写真 1.jpg"),
        ("evil\u202egpj.exe", "evilgpj.exe"),
        ("...", "image.jpg"),
    ],
)
async def test_file_names_are_sanitised_and_never_used_as_storage_keys(
    client: httpx.AsyncClient, settings: Settings, raw_name: str, stored_name: str
) -> None:
    response = await upload(client, make_jpeg(), filename=raw_name)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["filename"] == stored_name
    assert bucket_keys(settings) == {original_key_of(created)}


async def test_control_characters_in_a_raw_multipart_file_name_are_dropped(client: httpx.AsyncClient) -> None:
    # Built by hand: httpx would percent-encode these bytes, a hostile client does not.
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a\x01\x1b[31mb\x7f.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + make_jpeg() + b"\r\n--b--\r\n"
    )
    response = await client.post(UPLOAD_URL, content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == "a[31mb.jpg"


async def test_over_long_file_name_is_cut_to_255_bytes_keeping_the_extension(client: httpx.AsyncClient) -> None:
    response = await upload(client, make_jpeg(), filename="ä" * 300 + ".jpg")
    assert response.status_code == 201
    name = response.json()["filename"]
    assert len(name.encode()) <= 255
    assert name.endswith(".jpg")


async def test_failed_database_write_leaves_no_orphan_object(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    """A row that cannot commit takes its already-written blob with it.

    The database failure is caused for real: a trigger makes PostgreSQL refuse the INSERT after
    the object is stored (a fault we cannot provoke through the API alone).
    """
    async with app.state.engine.begin() as connection:
        from sqlalchemy import text

        await connection.execute(
            text(
                "CREATE OR REPLACE FUNCTION refuse_insert() RETURNS trigger AS $$ "
                "BEGIN RAISE EXCEPTION 'refused by test'; END $$ LANGUAGE plpgsql"
            )
        )
        await connection.execute(
            text("CREATE TRIGGER refuse_images BEFORE INSERT ON images FOR EACH ROW EXECUTE FUNCTION refuse_insert()")
        )
    try:
        response = await upload(client, make_jpeg())
    finally:
        async with app.state.engine.begin() as connection:
            await connection.execute(text("DROP TRIGGER refuse_images ON images"))
    assert response.status_code == 500
    body = response.json()
    assert body["detail"]["code"] == "INTERNAL_ERROR"
    assert "refused by test" not in response.text  # no SQL or stack in the body without DEBUG
    assert await image_row_count(app) == 0
    assert bucket_keys(settings) == set()
