"""bench/upload_floor.py is a fair ceiling only if its loop does an upload's whole work, no less.

Its decode scale and thumbnail must match the app's for the same file, and both files must be
stored, so that the ratio in docs/performance.md compares like with like. A loop that dies must
fail the run at once, not leave the benchmark waiting.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from app.services.thumbnail_render import render_thumbnail
from app.utils.image_validation import JPEG, inspect_image
from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))  # the harness's modules import each other by name

import images
import upload_floor


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 80, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(969, 727), (600, 450), (1300, 975), (727, 969), (2000, 400)])
def test_the_floor_decodes_at_the_scale_the_apps_validation_does(size: tuple[int, int]) -> None:
    body = _jpeg(*size)
    app = inspect_image(
        io.BytesIO(body),
        allowed_content_types={JPEG},
        max_pixels=50_000_000,
        declared_content_type=None,
        thumbnail_side=upload_floor.MAX_SIDE,
    )
    assert app.decoded is not None

    with upload_floor.decode(body) as floor:
        assert floor.size == app.decoded.image.size


def test_one_floor_upload_stores_the_original_and_the_thumbnail_the_app_would_make(tmp_path: Path) -> None:
    body = images.jpeg_near(200_000, seed=200)

    upload_floor.upload_once(body, tmp_path, "one")

    assert (tmp_path / "one.jpg").read_bytes() == body
    assert sorted(path.name for path in tmp_path.iterdir()) == ["one.jpg", "one.thumb.jpg"]  # no .part left
    app_thumbnail = render_thumbnail(io.BytesIO(body), max_side=upload_floor.MAX_SIDE)
    with Image.open(tmp_path / "one.thumb.jpg") as floor_thumbnail:
        assert floor_thumbnail.format == "JPEG"
        assert floor_thumbnail.size == (app_thumbnail.width, app_thumbnail.height)


def test_the_floor_counts_uploads_and_cpu_from_every_process(tmp_path: Path) -> None:
    body = images.jpeg_near(200_000, seed=200)

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
    body = images.jpeg_near(200_000, seed=200)
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
