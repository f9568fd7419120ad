"""bench/upload_floor.py is a fair ceiling only if its loop does an upload's whole work, no less.

Its thumbnail must match the app's for the same file (same size, same format), and both files must
be stored, so that the ratio in docs/performance.md compares like with like.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image

from app.services.thumbnail_render import render_thumbnail
from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))  # the harness's modules import each other by name

import images
import upload_floor


def test_one_floor_upload_stores_the_original_and_the_thumbnail_the_app_would_make(tmp_path: Path) -> None:
    body = images.jpeg_near(200_000, seed=200)

    upload_floor.upload_once(body, tmp_path, "one")

    assert (tmp_path / "one.jpg").read_bytes() == body
    assert sorted(path.name for path in tmp_path.iterdir()) == ["one.jpg", "one.thumb.jpg"]  # no .part left
    app_thumbnail = render_thumbnail(io.BytesIO(body), max_side=upload_floor.MAX_SIDE)
    with Image.open(tmp_path / "one.thumb.jpg") as floor_thumbnail:
        assert floor_thumbnail.format == "JPEG"
        assert floor_thumbnail.size == (app_thumbnail.width, app_thumbnail.height)


def test_the_floor_counts_uploads_from_every_process(tmp_path: Path) -> None:
    body = images.jpeg_near(200_000, seed=200)

    figures = upload_floor.measure(body, seconds=0.3, processes=2, folder=tmp_path)

    assert figures["processes"] == 2
    assert len(figures["uploads_by_process"]) == 2
    assert all(count > 0 for count in figures["uploads_by_process"])
    assert figures["uploads"] == sum(figures["uploads_by_process"])
    assert figures["uploads_per_s"] == round(figures["uploads"] / 0.3, 1)
    assert list(tmp_path.iterdir()) == []  # its files go with it
