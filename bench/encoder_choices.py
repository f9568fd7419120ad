"""Bytes and encode time of the variant encoders' candidate settings (ADR 0015's table).

    backend/.venv/bin/python bench/encoder_choices.py [--smooth] [--all]

A 600 px picture is cut from each of three 4000x3000 JPEGs the way variants are (draft decode, then
Lanczos with reducing_gap 2.0); each setting encodes it twice. Medians of time, means of size. The
pictures are a corpus photo blended with fractal detail and noise (`--smooth`: the photo alone, which
favours AVIF less). `--all` adds JPEG and PNG. Not part of `make bench`: it informs a choice, it does
not guard one.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

PHOTO = Path(__file__).resolve().parents[1] / "backend/tests/fixtures/images/flower.jpg"
SOURCE_SIZE = (4000, 3000)
TARGET_SIZE = (600, 450)
CANDIDATES: list[tuple[str, str, dict[str, object]]] = [
    ("JPEG q85 baseline", "JPEG", {"quality": 85}),
    ("JPEG q85 progressive 4:2:0", "JPEG", {"quality": 85, "progressive": True, "subsampling": "4:2:0"}),
    ("JPEG q85 optimize", "JPEG", {"quality": 85, "optimize": True}),
    ("WebP q80 method 0", "WEBP", {"quality": 80, "method": 0}),
    ("WebP q80 method 2", "WEBP", {"quality": 80, "method": 2}),
    ("WebP q80 method 4", "WEBP", {"quality": 80, "method": 4}),
    ("WebP q80 method 6", "WEBP", {"quality": 80, "method": 6}),
    ("AVIF q60 speed 10", "AVIF", {"quality": 60, "speed": 10, "max_threads": 2}),
    ("AVIF q60 speed 8", "AVIF", {"quality": 60, "speed": 8, "max_threads": 2}),
    ("AVIF q60 speed 6", "AVIF", {"quality": 60, "speed": 6, "max_threads": 2}),
    ("AVIF q60 speed 4", "AVIF", {"quality": 60, "speed": 4, "max_threads": 2}),
    ("AVIF q50 speed 8", "AVIF", {"quality": 50, "speed": 8, "max_threads": 2}),
    ("PNG level 6", "PNG", {"compress_level": 6}),
    ("PNG optimize", "PNG", {"optimize": True}),
]


def source_jpeg(seed: int, *, smooth: bool) -> bytes:
    photo = Image.open(PHOTO).convert("RGB").resize(SOURCE_SIZE, Image.Resampling.BICUBIC)
    if not smooth:
        extent = (-0.75 + seed * 0.01, 0.05, -0.70, 0.0875)
        detail = Image.effect_mandelbrot(SOURCE_SIZE, extent, 400).convert("RGB")
        noise = Image.effect_noise(SOURCE_SIZE, 18).convert("RGB")
        photo = Image.blend(Image.blend(photo, detail, 0.25), noise, 0.08)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def fitted(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", TARGET_SIZE)
    image.load()
    return image.resize(TARGET_SIZE, Image.Resampling.LANCZOS, reducing_gap=2.0)


def main() -> None:
    smooth = "--smooth" in sys.argv
    pictures = [fitted(source_jpeg(seed, smooth=smooth)) for seed in range(3)]
    print("| encoder | ms (median) | KiB (mean) |\n|---|---|---|")
    for name, pillow_format, options in CANDIDATES:
        if pillow_format in ("JPEG", "PNG") and "--all" not in sys.argv:
            continue
        times, sizes = [], []
        for _ in range(2):
            for picture in pictures:
                buffer = io.BytesIO()
                started = time.perf_counter()
                picture.save(buffer, pillow_format, **options)
                times.append(time.perf_counter() - started)
                sizes.append(len(buffer.getvalue()))
        print(f"| {name} | {statistics.median(times) * 1000:.1f} | {statistics.mean(sizes) / 1024:.1f} |")


if __name__ == "__main__":
    main()
