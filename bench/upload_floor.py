"""The ceiling for scenario 3: the work every 200 KB upload must do, in plain loops on every core.

Each upload with full validation and a thumbnail has to decode the JPEG (at the thumbnail's scale;
a truncated or corrupt file only shows when decoded), hash it, store it durably, resize and encode a
thumbnail and store that durably too. Here that work runs with plain Pillow and plain system calls,
one process per core, with no HTTP, database, cache or event loop (and none of the app's own extras:
its header scan, EXIF read, copy of the decoded frame, hash of the thumbnail).

Uploads/s against this floor says what share of the machine's capacity for the work the service
reaches. It moves less with the machine's speed than an absolute rate does, though not at all is
too much to ask: the floor has the cores to itself, while the service shares them with the load
generator, PostgreSQL and Redis, so even a server with no overhead would stay below 1.

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
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from PIL import Image

from thumbnail_floor import MAX_SIDE  # THUMBNAIL_SIZE's default, as in scenario 4's floor

JPEG_QUALITY = 85  # what the app encodes thumbnails at
# Spawning a process and importing Pillow takes about a second; a loop not started by then is stuck.
START_TIMEOUT_SECONDS = 120


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


def decode(body: bytes) -> Image.Image:
    """Decode as the app's validation does: at the smallest JPEG scale that still covers the thumbnail."""
    image = Image.open(io.BytesIO(body), formats=("JPEG",))
    width, height = image.size
    scale = min(1.0, MAX_SIDE / max(width, height))
    image.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
    image.load()
    return image


def upload_once(body: bytes, folder: Path, name: str) -> None:
    """One upload's least work: decode (validates), hash, store, thumbnail, encode, store."""
    with decode(body) as image:
        hashlib.sha256(body).hexdigest()
        store_durably(folder, f"{name}.jpg", body)
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        encoded = io.BytesIO()
        image.save(encoded, "JPEG", quality=JPEG_QUALITY)
    store_durably(folder, f"{name}.thumb.jpg", encoded.getvalue())


def _loop(body: bytes, folder: str, seconds: float, start: Barrier, counts: Any, cpu: Any, index: int) -> None:
    own = Path(folder) / str(index)
    own.mkdir()
    upload_once(body, own, "warm-up")  # first-call costs (plugin imports, allocator) are not measured
    start.wait()  # all loops start together; raises if one never comes (the parent kills the rest)
    done = 0
    cpu_started = time.process_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        upload_once(body, own, str(done))
        done += 1
    cpu[index] = time.process_time() - cpu_started
    counts[index] = done


def measure(body: bytes, *, seconds: float, processes: int, folder: Path) -> dict[str, Any]:
    """Uploads/s of `processes` plain loops started together; their files stay in `folder`.

    The files are the caller's to remove, and best removed when nothing is being timed any more:
    deleting thousands of files makes the next new files dearer on ext4 for a while.

    Raises RuntimeError if a loop fails or the run overstays, without waiting for the other loops:
    they are killed. (Not `Barrier.abort()`: it waits for every process at the barrier to wake,
    and one that was killed there never does.)
    """
    if seconds <= 0 or processes < 1:
        raise ValueError("the floor needs a positive duration and at least one process")
    # Spawned, not forked: the caller may have threads of its own, which fork does not carry safely.
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes, timeout=START_TIMEOUT_SECONDS)
    counts = context.Array("q", processes)
    cpu = context.Array("d", processes)
    workers = [
        context.Process(target=_loop, args=(body, str(folder), seconds, start, counts, cpu, index), daemon=True)
        for index in range(processes)
    ]
    try:
        for worker in workers:
            worker.start()
        finished = _wait_for(workers, deadline=time.monotonic() + START_TIMEOUT_SECONDS + seconds + 60)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
            if worker.pid is not None:
                worker.join()
    if not finished:
        raise RuntimeError(f"upload floor: the loops did not finish within {seconds:g} s and the start-up allowance")
    failed = [worker.exitcode for worker in workers if worker.exitcode != 0]
    if failed:
        raise RuntimeError(f"upload floor: a loop process failed (exit codes {failed})")
    per_process = [counts[index] for index in range(processes)]
    uploads = sum(per_process)
    cpu_seconds = sum(cpu[index] for index in range(processes))
    return {
        "kind": "loop",
        "processes": processes,
        "seconds": seconds,
        "uploads": uploads,
        "uploads_by_process": per_process,
        "uploads_per_s": round(uploads / seconds, 1),
        "cpu_ms_per_upload": round(cpu_seconds * 1000 / uploads, 2) if uploads else None,
    }


def _wait_for(workers: Sequence[BaseProcess], *, deadline: float) -> bool:
    """Wait until every loop has ended or one has failed (True), or time is up (False)."""
    while time.monotonic() < deadline:
        if all(not worker.is_alive() for worker in workers):
            return True
        if any(worker.exitcode not in (None, 0) for worker in workers):
            return True
        time.sleep(0.05)
    return False


def cores() -> int:
    """The cores this process may run on (affinity and cpusets count, unlike os.cpu_count())."""
    return len(os.sched_getaffinity(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--processes", type=int, default=cores())
    args = parser.parse_args()

    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import images

    body = images.jpeg_near(200_000, seed=200)  # the harness's upload body
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(measure(body, seconds=args.seconds, processes=args.processes, folder=Path(folder))))


if __name__ == "__main__":
    main()
