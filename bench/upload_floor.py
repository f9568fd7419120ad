"""Floors for the upload scenarios: the work an upload cannot avoid, in plain loops on every core.

Two loops, one process per core, with plain Pillow and plain system calls and no HTTP, database,
cache or event loop:

- `upload` (the ceiling of scenario 3, a 200 KB JPEG): decode the JPEG at the thumbnail's scale (a
  truncated or corrupt file only shows when decoded), hash it, store it durably, resize and encode a
  thumbnail and store that durably too (none of the app's own extras: its header scan, metadata
  stripping, EXIF read, copy of the decoded frame, hash of the thumbnail).
- `decode_store` (the floor of the WebP and HEIC uploads): open and decode the whole picture, as the
  app's validation must, hash the bytes and store them durably; no thumbnail.

Uploads/s against the `upload` floor says what share of the machine's capacity for the work the
service reaches. It moves less with the machine's speed than an absolute rate does, though not at
all is too much to ask: the floor has the cores to itself, while the service shares them with the
load generator, PostgreSQL and Redis, so even a server with no overhead would stay below 1.

CPU per upload is counted as the server's is (services.CpuReading: the process's user and system
time from /proc, every thread included), between the start of the loops and their end.

Run from the repository: `backend/.venv/bin/python bench/upload_floor.py [--seconds 10] [--processes N]
[--work upload|decode_store] [--image jpeg|webp|heic]`.
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
from typing import Any, Protocol

from PIL import Image

from services import CpuReading
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


def register_heif() -> None:
    """Let Pillow open HEIC, with the options the app registers pillow-heif with (app/media/codecs.py)."""
    from pillow_heif import register_heif_opener

    register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


def decode_whole(body: bytes) -> Image.Image:
    """Open and decode every frame at full size, as the app's validation does for any format but JPEG."""
    image = Image.open(io.BytesIO(body))
    frame = 0
    while True:
        image.load()
        frame += 1
        try:
            image.seek(frame)
        except EOFError:
            return image


def decode_store_once(body: bytes, folder: Path, name: str) -> None:
    """The least work of a new upload's original: decode it whole (validates), hash it, store it."""
    with decode_whole(body):
        hashlib.sha256(body).hexdigest()
        store_durably(folder, name, body)


class Work(Protocol):
    def __call__(self, body: bytes, folder: Path, name: str) -> None: ...


# By name: a spawned loop is told which work to do with a string it can look up after importing this module.
WORKS: dict[str, Work] = {"upload": upload_once, "decode_store": decode_store_once}


def _loop(
    work_name: str, body: bytes, folder: str, seconds: float, start: Barrier, counts: Any, cpu: Any, index: int
) -> None:
    work = WORKS[work_name]
    if work_name == "decode_store":
        register_heif()
    own = Path(folder) / str(index)
    own.mkdir()
    work(body, own, "warm-up")  # first-call costs (plugin imports, allocator) are not measured
    start.wait()  # all loops start together; raises if one never comes (the parent kills the rest)
    done = 0
    cpu_started = CpuReading.now(os.getpid())
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        work(body, own, str(done))
        done += 1
    cpu[index] = _cpu_seconds(cpu_started, CpuReading.now(os.getpid()))
    counts[index] = done


def _cpu_seconds(earlier: CpuReading, later: CpuReading) -> float:
    return (later.process_ticks - earlier.process_ticks) / os.sysconf("SC_CLK_TCK")


def measure(body: bytes, *, seconds: float, processes: int, folder: Path, work: str = "upload") -> dict[str, Any]:
    """Uploads/s of `processes` plain loops of `work` started together; their files stay in `folder`.

    The files are the caller's to remove, and best removed when nothing is being timed any more:
    deleting thousands of files makes the next new files dearer on ext4 for a while.

    Raises RuntimeError if a loop fails or the run overstays, without waiting for the other loops:
    they are killed. (Not `Barrier.abort()`: it waits for every process at the barrier to wake,
    and one that was killed there never does.)
    """
    if seconds <= 0 or processes < 1:
        raise ValueError("the floor needs a positive duration and at least one process")
    if work not in WORKS:
        raise ValueError(f"no floor work named {work!r}: {sorted(WORKS)}")
    # Spawned, not forked: the caller may have threads of its own, which fork does not carry safely.
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes, timeout=START_TIMEOUT_SECONDS)
    counts = context.Array("q", processes)
    cpu = context.Array("d", processes)
    workers = [
        context.Process(target=_loop, args=(work, body, str(folder), seconds, start, counts, cpu, index), daemon=True)
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
        "work": work,
        "body_bytes": len(body),
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
    parser.add_argument("--work", choices=sorted(WORKS), default="upload")
    parser.add_argument("--image", choices=("jpeg", "webp", "heic"), default="jpeg")
    args = parser.parse_args()

    import images

    # The harness's upload bodies.
    make = {"jpeg": images.upload_jpeg, "webp": images.upload_webp, "heic": images.upload_heic}[args.image]
    with tempfile.TemporaryDirectory() as folder:
        figures = measure(make(), seconds=args.seconds, processes=args.processes, folder=Path(folder), work=args.work)
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
