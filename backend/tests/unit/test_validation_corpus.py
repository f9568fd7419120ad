"""Upload validation against the real-file corpus: every file gets the manifest's answer, and what is stored is safe."""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from typing import Any

import pytest
from PIL import Image, ImageFile

from app.errors import AppError, InvalidImage, InvalidRequest
from app.media.formats import ALL_CONTENT_TYPES
from app.media.validation import prepare_upload
from tests.conftest import corpus_bytes
from tests.image_checks import frames_pixels, orientation, revealing_metadata
from tests.unit.upload_pipeline import (
    CORPUS,
    ERRORS_BY_CODE,
    GENERIC_INVALID_IMAGE,
    LIMIT_CODES,
    LIMITS,
    corpus_ids,
    prepare,
    validate,
)

ACCEPTED = [case for case in CORPUS if case["expected"]["status"] == 201]
REJECTED = [case for case in CORPUS if case["expected"]["status"] != 201]
OVER_LIMITS = [case for case in CORPUS if case["expected"]["code"] in LIMIT_CODES]
# Accepted only because stripping drops what breaks them (the README's "Stripping changes two answers").
SAVED_BY_STRIPPING = ("png_decompression_dos.png", "sugarshack_no_data.mpo")
KEPT_AS_UPLOADED = [case for case in ACCEPTED if case["file"] not in SAVED_BY_STRIPPING]


def carries(case: dict[str, Any], kind: str) -> bool:
    """What the manifest's `metadata` says the upload holds (generated files only)."""
    return bool((case.get("metadata") or {}).get(kind))


WITH_METADATA = [case for case in ACCEPTED if carries(case, "gps") or carries(case, "xmp")]


@pytest.mark.filterwarnings("error")  # Pillow's warnings must not change a verdict
@pytest.mark.parametrize("case", CORPUS, ids=corpus_ids(CORPUS))
def test_every_corpus_file_gets_the_manifest_verdict(case: dict[str, Any]) -> None:
    expected = case["expected"]
    data = corpus_bytes(case["file"])

    if expected["status"] == 201:
        prepared = validate(data)
        assert prepared.content_type == f"image/{expected['stored_format']}"
        # As stored, before any orientation: a HEIC with irot still reports its coded 320x240.
        assert (prepared.width, prepared.height) == (case["width"], case["height"])
        return
    # empty.jpg expects INVALID_REQUEST: the router answers it first, and validation agrees.
    with pytest.raises(ERRORS_BY_CODE[expected["code"]]) as raised:
        validate(data)
    assert (raised.value.code, raised.value.status_code) == (expected["code"], expected["status"])


@pytest.mark.parametrize("case", REJECTED, ids=corpus_ids(REJECTED))
def test_a_refusal_says_why_without_leaking_decoder_messages(case: dict[str, Any]) -> None:
    with pytest.raises(AppError) as raised:
        validate(corpus_bytes(case["file"]))
    error = raised.value

    match error.code:
        case "INVALID_IMAGE":
            # Decoder messages can name temporary paths: the client gets one generic sentence.
            assert (error.message, error.details) == (GENERIC_INVALID_IMAGE, {})
            assert error.__cause__ is not None  # the cause stays in the chain for the logs
        case "IMAGE_DIMENSIONS_EXCEEDED":
            assert error.details == {"width": case["width"], "height": case["height"], "max_pixels": LIMITS.max_pixels}
        case "ANIMATION_TOO_LARGE":
            if case["frames"] > LIMITS.max_frames:
                assert error.details["limit"] == "frames"
                # Counting stops past the limit: the count is "more than allowed", not the file's total.
                assert LIMITS.max_frames < error.details["frames"] <= case["frames"]
            else:
                assert error.details["limit"] == "pixels"
                pixels = case["width"] * case["height"] * case["frames"]
                assert error.details == {
                    "limit": "pixels",
                    "pixels": pixels,
                    "max_animation_pixels": LIMITS.max_animation_pixels,
                }
        case "INVALID_FILE_FORMAT":
            assert error.details == {"detected": None, "allowed": sorted(ALL_CONTENT_TYPES)}
        case _:
            assert isinstance(error, InvalidRequest)


@pytest.mark.parametrize("case", OVER_LIMITS, ids=corpus_ids(OVER_LIMITS))
def test_a_file_over_the_limits_is_refused_before_pillow_opens_it(
    monkeypatch: pytest.MonkeyPatch, case: dict[str, Any]
) -> None:
    opened: list[object] = []
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: opened.append(args))

    with pytest.raises(ERRORS_BY_CODE[case["expected"]["code"]]):
        validate(corpus_bytes(case["file"]))
    assert opened == []


@pytest.mark.parametrize("case", ACCEPTED, ids=corpus_ids(ACCEPTED))
def test_stored_bytes_reveal_no_metadata_and_keep_the_picture(case: dict[str, Any]) -> None:
    data = corpus_bytes(case["file"])
    prepared = validate(data)

    assert prepared.stripped
    assert revealing_metadata(prepared.data) == {}
    assert orientation(prepared.data) == case["expected"]["thumbnail"]["orientation_applied"]
    assert prepared.checksum == hashlib.sha256(prepared.data).hexdigest()
    # The upload's own checksum only where stripping found nothing to drop.
    assert (prepared.checksum == case["sha256"]) == (prepared.data == data)
    if case["decodes"]:
        stored_frames = frames_pixels(prepared.data)
        # An MPO keeps its primary picture only; every other file keeps every frame.
        assert len(stored_frames) == (1 if case["format"] == "MPO" else case["frames"])
        assert stored_frames == frames_pixels(data, frames=len(stored_frames))


@pytest.mark.parametrize("case", WITH_METADATA, ids=corpus_ids(WITH_METADATA))
def test_gps_camera_and_xmp_in_an_upload_are_gone_from_what_is_stored(case: dict[str, Any]) -> None:
    data = corpus_bytes(case["file"])
    # Guards the check below: Pillow does find the metadata in the upload.
    assert revealing_metadata(data) != {}

    stored = validate(data).data

    assert revealing_metadata(stored) == {}
    assert b"xmpmeta" not in stored


@pytest.mark.parametrize("case", KEPT_AS_UPLOADED, ids=corpus_ids(KEPT_AS_UPLOADED))
def test_without_stripping_the_upload_is_stored_byte_for_byte(case: dict[str, Any]) -> None:
    data = corpus_bytes(case["file"])

    prepared = validate(data, strip=False)

    assert (prepared.data, prepared.checksum, prepared.stripped) == (data, case["sha256"], False)


@pytest.mark.parametrize("name", SAVED_BY_STRIPPING)
def test_without_stripping_the_files_it_repairs_are_refused(name: str) -> None:
    # Their zTXt bombs, or an MPO frame that points past the end, are then decoded like every frame.
    assert validate(corpus_bytes(name)).stripped
    with pytest.raises(InvalidImage):
        validate(corpus_bytes(name), strip=False)


def test_empty_input_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as raised:
        prepare(b"")
    assert raised.value.message == "The uploaded file is empty."


def test_the_whole_file_is_read_wherever_the_callers_position_is() -> None:
    data = corpus_bytes("hopper.jpg")
    file = io.BytesIO(data)
    file.seek(100)

    prepared = prepare_upload(
        file, allowed_content_types=ALL_CONTENT_TYPES, declared_content_type=None, limits=LIMITS, strip=False
    )

    assert prepared.data == data
    assert not file.closed


def test_validation_leaves_pillow_and_warning_settings_as_they_were() -> None:
    max_image_pixels = Image.MAX_IMAGE_PIXELS
    filters = list(warnings.filters)
    for name in ("hopper.jpg", "truncated_jpeg.jpg", "png_header_100000x100000_bomb.png", "heic_corrupt.heic"):
        with contextlib.suppress(AppError):
            validate(corpus_bytes(name))

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert max_image_pixels == Image.MAX_IMAGE_PIXELS
    assert warnings.filters == filters
