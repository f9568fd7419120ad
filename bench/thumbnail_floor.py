"""Compare render_thumbnail with the floor for its job: Pillow's own draft + thumbnail + JPEG encode.

Run from the backend: `cd backend && .venv/bin/python ../bench/thumbnail_floor.py [--runs 20]`.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from PIL import __version__ as pillow_version

BACKEND_DIR = Path(__file__).resolve().parents[1] / "backend"
SIZE = (4000, 3000)
MAX_SIDE = 300
SEED = 20240601


def make_photo_like_jpeg() -> bytes:
    """A 12 MP JPEG at quality 90 with smooth colour fields plus grain, so it codes like a photo."""
    rng = random.Random(SEED)
    # Upscaled random colour blobs give photo-like low frequencies; a light layer of noise adds the
    # high-frequency detail (sensor grain, texture) that makes real photos expensive to decode.
    blobs = Image.frombytes("RGB", (40, 30), rng.randbytes(40 * 30 * 3)).resize(SIZE, Image.Resampling.BICUBIC)
    grain = Image.frombytes("RGB", SIZE, rng.randbytes(SIZE[0] * SIZE[1] * 3))
    photo = Image.blend(blobs, grain, 0.08)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def floor_once(data: bytes) -> None:
    """The least work that produces the same thumbnail: draft, thumbnail, encode."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (MAX_SIDE, MAX_SIDE))
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        image.save(io.BytesIO(), "JPEG", quality=85)


def median_ms(work: Callable[[], object], runs: int) -> float:
    work()  # warm-up: first-call costs (plugin imports, allocator) are not what is measured
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def measure(source: bytes, runs: int) -> dict[str, Any]:
    """The harness's loop: Pillow's least work for the thumbnail, and the app's render_thumbnail, in turn.

    The two alternate run by run, so a burst of other work on the machine slows both alike.
    """
    from app.media.thumbnails import render_thumbnail

    def floor() -> None:
        floor_once(source)

    def rendered() -> None:
        render_thumbnail(io.BytesIO(source), max_side=MAX_SIDE)

    timings: dict[str, list[float]] = {"floor": [], "render": []}
    floor()  # warm-up: plugin imports and first allocations are not what is measured
    rendered()
    for _ in range(runs):
        for name, work in (("floor", floor), ("render", rendered)):
            started = time.perf_counter()
            work()
            timings[name].append((time.perf_counter() - started) * 1000)
    return {
        "kind": "loop",
        "runs": runs,
        "floor_median_ms": round(statistics.median(timings["floor"]), 2),
        "floor_min_ms": round(min(timings["floor"]), 2),
        "render_thumbnail_median_ms": round(statistics.median(timings["render"]), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs

    # Imported here: the backend is not installed, so its folder goes on the path first.
    sys.path.insert(0, str(BACKEND_DIR))
    from app.media.thumbnails import render_thumbnail

    data = make_photo_like_jpeg()
    result = render_thumbnail(io.BytesIO(data), max_side=MAX_SIDE)
    print(f"source: {SIZE[0]}x{SIZE[1]} JPEG q90, {len(data) / 1e6:.2f} MB; thumbnail {result.width}x{result.height}")
    print(f"Pillow {pillow_version}, {runs} runs each, median:")

    floor = median_ms(lambda: floor_once(data), runs)
    rendered = median_ms(lambda: render_thumbnail(io.BytesIO(data), max_side=MAX_SIDE), runs)
    print(f"  floor (open + draft + thumbnail + JPEG q85): {floor:8.2f} ms")
    print(f"  render_thumbnail:                            {rendered:8.2f} ms")
    print(f"  ratio render/floor:                          {rendered / floor:8.2f}")


if __name__ == "__main__":
    main()
