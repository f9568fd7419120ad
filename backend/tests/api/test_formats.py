"""What people upload today, end to end: every format gets a thumbnail, nothing keeps its metadata."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.api.apps import running_app
from tests.api.waiting import wait_for_thumbnail
from tests.conftest import corpus_bytes, load_corpus
from tests.error_checks import without_request_id
from tests.factories import upload
from tests.image_checks import frames_pixels, open_image, orientation, revealing_metadata

# The corpus files made for the formats beyond JPEG and PNG, and the photos full of metadata.
GENERATED = [
    case for case in load_corpus() if case["source"].startswith("generated:") and case["expected"]["status"] == 201
]


@pytest.mark.parametrize("case", GENERATED, ids=[case["file"] for case in GENERATED])
async def test_every_format_gets_its_thumbnail_and_no_derived_file_has_metadata(
    client: httpx.AsyncClient, case: dict[str, Any]
) -> None:
    created = (await upload(client, corpus_bytes(case["file"]), filename=case["file"])).json()

    settled = (await wait_for_thumbnail(client, created["id"])).json()

    assert settled["thumbnail_status"] == "ready"
    thumbnail = await client.get(settled["thumbnail_url"])
    expected = case["expected"]["thumbnail"]
    picture = open_image(thumbnail.content)
    # A still of the first frame, oriented as a viewer shows the original, fitted into 300 px.
    assert getattr(picture, "n_frames", 1) == 1
    assert abs(picture.width - expected["width"]) <= 1
    assert abs(picture.height - expected["height"]) <= 1
    assert ("A" in picture.getbands()) == expected["has_alpha"]
    assert thumbnail.headers["content-type"] == ("image/png" if expected["has_alpha"] else "image/jpeg")
    assert revealing_metadata(thumbnail.content) == {}
    assert orientation(thumbnail.content) == 1
    assert "icc_profile" not in picture.info


async def test_with_stripping_off_the_original_is_stored_as_uploaded(settings: Settings) -> None:
    photo = corpus_bytes("jpeg_camera_metadata_orientation_6.jpg")
    async with running_app(settings.model_copy(update={"strip_metadata": False})) as (_app, client):
        created = (await upload(client, photo)).json()
        download = await client.get(created["url"])
    assert download.content == photo
    assert "gps" in revealing_metadata(download.content)


async def test_a_phone_photo_keeps_its_picture_and_orientation_but_not_where_it_was_taken(
    client: httpx.AsyncClient,
) -> None:
    photo = corpus_bytes("jpeg_camera_metadata_orientation_6.jpg")
    assert {"gps", "Make", "Model"} <= revealing_metadata(photo).keys()

    created = (await upload(client, photo, filename="IMG_0001.jpg")).json()
    stored = (await client.get(created["url"])).content

    assert revealing_metadata(stored) == {}
    assert orientation(stored) == orientation(photo) == 6
    assert frames_pixels(stored) == frames_pixels(photo)


async def test_the_allowed_types_can_be_narrowed_and_the_refusal_says_what_is_allowed(settings: Settings) -> None:
    narrowed = settings.model_copy(update={"allowed_content_types": ("image/jpeg", "image/png")})
    async with running_app(narrowed) as (_app, client):
        response = await upload(client, corpus_bytes("webp_lossy_photo_640x480.webp"), filename="photo.webp")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail["code"] == "INVALID_FILE_FORMAT"
    assert without_request_id(detail["details"]) == {"detected": "image/webp", "allowed": ["image/jpeg", "image/png"]}


@pytest.mark.parametrize(
    ("name", "declared", "status"),
    [
        ("heif_with_jpg_extension.jpg", "image/heif", 201),  # a HEIC is a HEIF
        ("heic_static.heic", "image/heic", 201),
        ("webp_with_png_extension.png", "image/png", 400),  # the claim contradicts the bytes
        ("gif_static_palette.gif", "image/gif", 201),
    ],
)
async def test_a_declared_type_must_agree_with_the_bytes(
    client: httpx.AsyncClient, name: str, declared: str, status: int
) -> None:
    response = await upload(client, corpus_bytes(name), filename=name, content_type=declared)
    assert response.status_code == status, response.text
