"""The ceiling for scenario 3: the work every 200 KB upload must do, in plain loops on every core.

Each upload with full validation and a thumbnail has to decode the JPEG (at the thumbnail's scale;
a truncated or corrupt file only shows when decoded), hash it, store it durably, resize and encode a
thumbnail and store that durably too. Here that work runs with plain Pillow and plain system calls,
one process per core, with no HTTP, database, cache or event loop. Uploads/s against this floor says
how much of the machine the service turns into uploads, on any machine, as the other ceilings do;
an absolute rate moves with the machine's speed.

Run from the repository: `backend/.venv/bin/python bench/upload_floor.py [--seconds 10] [--processes N]`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import tempfile
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from PIL import Image

MAX_SIDE = 300  # THUMBNAIL_SIZE's default
JPEG_QUALITY = 85  # what the app encodes thumbnails at


def store_durably(folder: Path, name: str, data: bytes) -> None:
    """What any durable store does for a new file: temporary file, write, fsync, rename into place."""
    temporary = folder / f".{name}.part"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, folder / name)


def upload_once(body: bytes, folder: Path, name: str) -> None:
    """One upload's least work: decode (validates), hash, store, thumbnail, encode, store."""
    with Image.open(io.BytesIO(body), formats=("JPEG",)) as image:
        image.draft("RGB", (MAX_SIDE, MAX_SIDE))
        image.load()
        hashlib.sha256(body).hexdigest()
        store_durably(folder, f"{name}.jpg", body)
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        encoded = io.BytesIO()
        image.save(encoded, "JPEG", quality=JPEG_QUALITY)
    store_durably(folder, f"{name}.thumb.jpg", encoded.getvalue())


def _loop(body: bytes, folder: str, seconds: float, start: Barrier, counts: Any, index: int) -> None:
    own = Path(folder) / str(index)
    own.mkdir()
    upload_once(body, own, "warm-up")  # first-call costs (plugin imports, allocator) are not measured
    start.wait()
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        upload_once(body, own, str(done))
        done += 1
    counts[index] = done


def measure(body: bytes, *, seconds: float, processes: int, folder: Path) -> dict[str, Any]:
    """Uploads/s of `processes` plain loops started together; their files go into `folder` (emptied after)."""
    # Spawned, not forked: the caller may have threads of its own, which fork does not carry safely.
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    counts = context.Array("q", processes)
    with tempfile.TemporaryDirectory(dir=folder) as work:
        workers = [
            context.Process(target=_loop, args=(body, work, seconds, start, counts, index))
            for index in range(processes)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=seconds + 120)
        failed = [worker.exitcode for worker in workers if worker.exitcode != 0]
        if failed:
            raise RuntimeError(f"upload floor: a loop process failed (exit codes {failed})")
    per_process = [counts[index] for index in range(processes)]
    uploads = sum(per_process)
    return {
        "kind": "loop",
        "processes": processes,
        "seconds": seconds,
        "uploads": uploads,
        "uploads_by_process": per_process,
        "uploads_per_s": round(uploads / seconds, 1),
        "ms_per_upload_per_core": round(seconds * processes * 1000 / uploads, 2) if uploads else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import images

    body = images.jpeg_near(200_000, seed=200)  # the harness's upload body
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(measure(body, seconds=args.seconds, processes=args.processes, folder=Path(folder))))


if __name__ == "__main__":
    main()
