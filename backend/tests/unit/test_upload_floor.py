"""bench/upload_floor.py is a fair floor only if its loops do an upload's unavoidable work, no less.

The JPEG loop's decode scale and thumbnail must match the app's for the same file, and both files
must be stored; the WebP and HEIC loop must decode the pixels the app's validation decodes for the
bench's files. Then the ratios in docs/performance.md compare like with like. A loop that dies must
fail the run at once, not leave the benchmark waiting. And the bench's images must stay new content
after the app strips them, or the unique-upload scenarios would measure duplicates.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from app.media.formats import ALL_CONTENT_TYPES, JPEG
from app.media.thumbnails import render_thumbnail
from app.media.validation import Limits, PreparedUpload, decode_upload, prepare_upload
from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))  # the harness's modules import each other by name

import images
import upload_floor

# The settings' defaults (MAX_IMAGE_PIXELS, MAX_FRAMES, MAX_ANIMATION_PIXELS).
LIMITS = Limits(max_pixels=50_000_000, max_frames=1000, max_animation_pixels=500_000_000)
# Smaller than the harness's, made the same way: a 4032x3024 HEIC takes seconds to encode.
SMALL_HEIC_SIZE = (640, 480)


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 80, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


def _prepare(body: bytes, *, strip: bool = True) -> PreparedUpload:
    return prepare_upload(
        io.BytesIO(body),
        allowed_content_types=ALL_CONTENT_TYPES,
        declared_content_type=None,
        limits=LIMITS,
        strip=strip,
    )


@pytest.mark.parametrize("size", [(969, 727), (600, 450), (1300, 975), (727, 969), (2000, 400)])
def test_the_floor_decodes_at_the_scale_the_apps_validation_does(size: tuple[int, int]) -> None:
    body = _jpeg(*size)
    prepared = prepare_upload(
        io.BytesIO(body), allowed_content_types={JPEG}, declared_content_type=None, limits=LIMITS, strip=True
    )
    app = decode_upload(prepared, limits=LIMITS, thumbnail_side=upload_floor.MAX_SIDE)

    with upload_floor.decode(body) as floor:
        assert floor.size == app.image.size


def test_the_floor_decodes_the_phone_jpeg_at_the_scale_the_app_does() -> None:
    body = images.upload_jpeg()
    app = decode_upload(_prepare(body), limits=LIMITS, thumbnail_side=upload_floor.MAX_SIDE)

    with upload_floor.decode(body) as floor:
        assert floor.size == app.image.size


class _DecodedPixels:
    """Counts the pixels Pillow decodes: each frame loaded, once, at the size it was loaded at."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.frames: set[tuple[int, int, tuple[int, int], str]] = set()
        opened = Image.open

        def counting_open(*args: object, **kwargs: object) -> Image.Image:
            image = opened(*args, **kwargs)  # type: ignore[arg-type]
            load = image.load

            def counting_load() -> object:
                result = load()
                self.frames.add((id(image), image.tell(), image.size, image.mode))
                return result

            image.load = counting_load  # type: ignore[method-assign]
            return image

        monkeypatch.setattr(Image, "open", counting_open)

    @property
    def pixels(self) -> int:
        return sum(width * height for _, _, (width, height), _ in self.frames)

    @property
    def modes(self) -> set[str]:
        return {mode for *_, mode in self.frames}


def _small_heic() -> bytes:
    data: bytes = images.photo_like_heic(*SMALL_HEIC_SIZE, seed=1)
    return data


@pytest.mark.parametrize("make", [images.upload_webp, _small_heic], ids=["webp", "heic"])
def test_the_decode_floor_decodes_the_pixels_the_apps_validation_does(
    make: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = make()
    upload_floor.register_heif()
    prepared = _prepare(body)
    app = _DecodedPixels(monkeypatch)
    decode_upload(prepared, limits=LIMITS, thumbnail_side=upload_floor.MAX_SIDE)
    monkeypatch.undo()
    floor = _DecodedPixels(monkeypatch)

    with upload_floor.decode_whole(body):
        pass

    assert app.pixels == floor.pixels == prepared.width * prepared.height
    assert app.modes == floor.modes


@pytest.mark.parametrize("make", [images.upload_webp, _small_heic], ids=["webp", "heic"])
def test_one_decode_floor_upload_stores_the_original(make: Callable[[], bytes], tmp_path: Path) -> None:
    body = make()
    upload_floor.register_heif()

    upload_floor.decode_store_once(body, tmp_path, "one")

    assert [path.name for path in tmp_path.iterdir()] == ["one"]  # no .part left
    assert (tmp_path / "one").read_bytes() == body


@pytest.mark.parametrize(
    "make",
    [images.upload_jpeg, images.upload_webp, _small_heic, images.thumbnail_source_jpeg],
    ids=["jpeg", "webp", "heic", "thumbnail-source"],
)
def test_stamped_bench_images_stay_new_content_after_stripping_and_decode_alike(make: Callable[[], bytes]) -> None:
    body = make()
    variants = [images.stamped(body, images.FIRST_STAMP_SECOND - second) for second in (1, 2, 3)]

    prepared = [_prepare(variant) for variant in variants]

    assert len({upload.checksum for upload in prepared}) == 3
    assert all(images.icc_profile()[36:] in upload.data for upload in prepared)  # the ICC profile is kept
    pixels = []
    for upload in prepared:
        upload_floor.register_heif()
        with Image.open(io.BytesIO(upload.data)) as image:
            pixels.append(image.convert("RGB").tobytes())
    assert pixels[0] == pixels[1] == pixels[2]


def test_the_phone_jpeg_carries_what_stripping_removes() -> None:
    body = images.upload_jpeg()

    with Image.open(io.BytesIO(body)) as image:
        exif = image.getexif()
        assert exif[0x010F] == "Google"  # Make
        assert exif.get_ifd(0x8825)  # GPS
        assert "xmp" in image.info
        assert image.info["icc_profile"] == images.icc_profile()
    stripped = _prepare(body).data
    assert len(stripped) < len(body)
    with Image.open(io.BytesIO(stripped)) as image:
        assert not image.getexif()
        assert "xmp" not in image.info
        assert image.info["icc_profile"] == images.icc_profile()


def test_one_floor_upload_stores_the_original_and_the_thumbnail_the_app_would_make(tmp_path: Path) -> None:
    body = images.upload_jpeg()

    upload_floor.upload_once(body, tmp_path, "one")

    assert (tmp_path / "one.jpg").read_bytes() == body
    assert sorted(path.name for path in tmp_path.iterdir()) == ["one.jpg", "one.thumb.jpg"]  # no .part left
    app_thumbnail = render_thumbnail(io.BytesIO(body), max_side=upload_floor.MAX_SIDE)
    with Image.open(tmp_path / "one.thumb.jpg") as floor_thumbnail:
        assert floor_thumbnail.format == "JPEG"
        assert floor_thumbnail.size == (app_thumbnail.width, app_thumbnail.height)


def test_the_floor_counts_uploads_and_cpu_from_every_process(tmp_path: Path) -> None:
    body = images.upload_jpeg()

    figures = upload_floor.measure(body, seconds=0.3, processes=2, folder=tmp_path)

    assert figures["processes"] == 2
    assert len(figures["uploads_by_process"]) == 2
    assert all(count > 0 for count in figures["uploads_by_process"])
    assert figures["uploads"] == sum(figures["uploads_by_process"])
    assert figures["uploads_per_s"] == round(figures["uploads"] / 0.3, 1)
    assert figures["cpu_ms_per_upload"] > 0
    # Every counted upload stored its original and thumbnail (each loop also made one to warm up).
    for index, count in enumerate(figures["uploads_by_process"]):
        assert len(list((tmp_path / str(index)).glob("*.thumb.jpg"))) == count + 1
        assert len(list((tmp_path / str(index)).glob("*.jpg"))) == 2 * (count + 1)


def test_a_loop_that_dies_fails_the_floor_at_once_and_leaves_no_process(tmp_path: Path) -> None:
    body = images.upload_jpeg()
    killed: list[int] = []

    def kill_the_first_loop() -> None:
        # Spawning and importing Pillow takes a good part of a second, so this lands before the
        # start barrier, where the other loop would otherwise wait for it for 120 s.
        deadline = time.monotonic() + 20
        while not (children := multiprocessing.active_children()):
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
        killed.append(children[0].pid or 0)
        os.kill(children[0].pid or 0, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_first_loop, daemon=True)
    killer.start()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="a loop process failed"):
        upload_floor.measure(body, seconds=30, processes=2, folder=tmp_path)

    assert killed
    assert time.monotonic() - started < 20  # not the 30 s of the loops, nor the barrier's 120 s
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize(("seconds", "processes"), [(0, 2), (1, 0)])
def test_the_floor_refuses_a_run_that_measures_nothing(tmp_path: Path, seconds: float, processes: int) -> None:
    with pytest.raises(ValueError, match="positive duration"):
        upload_floor.measure(b"", seconds=seconds, processes=processes, folder=tmp_path)


def test_waiting_for_the_loops_gives_up_at_its_deadline() -> None:
    sleeper = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(30,), daemon=True)
    sleeper.start()
    try:
        started = time.monotonic()
        assert upload_floor._wait_for([sleeper], deadline=started + 0.3) is False
        assert time.monotonic() - started < 5
    finally:
        sleeper.kill()
        sleeper.join()
