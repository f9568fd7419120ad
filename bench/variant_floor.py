"""The floor of a cold variant: Pillow's least work for a 600 px WebP or AVIF of a 4000x3000 JPEG.

Open, let libjpeg decode at the smallest scale that still covers the width (draft), resize to the
width with the filter the app uses (Lanczos, reducing_gap 2.0, which the output's sharpness depends
on), encode with the server's encoder settings (Settings' defaults: the benchmark's servers run with
them). No HTTP, database or storage: what is left of a render when everything around it goes. It
makes the very bytes the app's `render_variant` makes.

Run from the repository: `backend/.venv/bin/python bench/variant_floor.py [--runs 10]`; it sets the
floor beside the app's own `render_variant` on the same file.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

BACKEND_DIR = Path(__file__).resolve().parents[1] / "backend"
WIDTH = 600
PILLOW_FORMATS = {"webp": "WEBP", "avif": "AVIF"}
# libavif's thread count follows the host unless set; the app sets 2 (not a setting).
AVIF_MAX_THREADS = 2


def encoder_options() -> dict[str, dict[str, Any]]:
    """Pillow's save options for each format, from the server's settings (their defaults)."""
    from app.config import Settings  # the backend's folder is on sys.path by now (harness, main)

    def default(name: str) -> Any:
        return Settings.model_fields[name].default

    return {
        "webp": {"quality": default("variant_webp_quality"), "method": default("variant_webp_method")},
        "avif": {
            "quality": default("variant_avif_quality"),
            "speed": default("variant_avif_speed"),
            "max_threads": AVIF_MAX_THREADS,
        },
    }


def render_once(data: bytes, image_format: str, options: dict[str, Any], width: int = WIDTH) -> bytes:
    """The least work that makes the same variant: draft decode, Lanczos resize, encode."""
    with Image.open(io.BytesIO(data), formats=("JPEG",)) as image:
        height = max(1, round(image.height * width / image.width))
        drafted = image.draft("RGB", (width, height))
        box = drafted[1] if drafted is not None else None
        picture = image.resize((width, height), Image.Resampling.LANCZOS, box=box, reducing_gap=2.0)
        icc_profile = image.info.get("icc_profile")
    buffer = io.BytesIO()
    extra = {"icc_profile": icc_profile} if icc_profile else {}
    picture.save(buffer, PILLOW_FORMATS[image_format], **options, **extra)
    return buffer.getvalue()


class FloorTimer:
    """The floor's renders, one at a time when the caller says: wall time and CPU (every thread) of each."""

    def __init__(self, image_format: str) -> None:
        self.image_format = image_format
        self.options = encoder_options()[image_format]
        self.wall_ms: list[float] = []
        self.cpu_ms: list[float] = []
        self.bytes = 0

    def warm_up(self, data: bytes) -> None:
        render_once(data, self.image_format, self.options)  # plugin imports and first allocations are not measured

    def render(self, data: bytes) -> None:
        cpu_started = time.process_time()  # the process's CPU: libavif's own threads count too
        started = time.perf_counter()
        self.bytes = len(render_once(data, self.image_format, self.options))
        self.wall_ms.append((time.perf_counter() - started) * 1000)
        self.cpu_ms.append((time.process_time() - cpu_started) * 1000)

    def figures(self) -> dict[str, Any]:
        return {
            "kind": "loop",
            "format": self.image_format,
            "width": WIDTH,
            "encoder": self.options,
            "samples": len(self.wall_ms),
            "median_ms": round(statistics.median(self.wall_ms), 1),
            "min_ms": round(min(self.wall_ms), 1),
            "cpu_ms_per_render": round(statistics.fmean(self.cpu_ms), 1),
            "variant_bytes": self.bytes,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs

    # Imported here: the backend is not installed, so its folder goes on the path first.
    sys.path.insert(0, str(BACKEND_DIR))
    import images
    from app.config import Settings
    from app.media.variants import VariantRecipe, render_variant
    from app.services.variant_naming import encoders_of

    source = images.thumbnail_source_jpeg()
    encoders = encoders_of(Settings())
    print(f"source: 4000x3000 JPEG, {len(source) / 1e6:.2f} MB; {runs} runs each, in turn; median wall, mean CPU")
    for image_format in PILLOW_FORMATS:
        floor = FloorTimer(image_format)
        floor.warm_up(source)
        app_wall, app_cpu = [], []
        recipe = VariantRecipe(WIDTH, image_format)
        for _ in range(runs):
            floor.render(source)
            cpu_started, started = time.process_time(), time.perf_counter()
            rendered = render_variant(source, recipe, encoders, max_animation_pixels=50_000_000)
            app_wall.append((time.perf_counter() - started) * 1000)
            app_cpu.append((time.process_time() - cpu_started) * 1000)
        figures = floor.figures()
        same = (
            "the same bytes" if render_once(source, image_format, floor.options) == rendered.data else "different bytes"
        )
        print(
            f"  {image_format} {floor.options}: "
            f"floor {figures['median_ms']} ms ({figures['cpu_ms_per_render']} ms CPU), "
            f"render_variant {statistics.median(app_wall):.1f} ms ({statistics.fmean(app_cpu):.1f} ms CPU); "
            f"{figures['variant_bytes']:,} B, {same}"
        )


if __name__ == "__main__":
    main()
