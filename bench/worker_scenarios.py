"""The workers pass (issue 15): uploads whose thumbnails are made by the job queue's worker tier.

The production layout of ADR 0016 on this machine's cores: API processes (uvicorn with --workers,
as backend/Dockerfile runs them) that queue one job per upload (JOB_QUEUE=postgres; the job is queued
before the 201), and a worker tier (`python -m app.worker`) that makes the thumbnails, all on the same
cores as the load generator, PostgreSQL and Redis. Local storage as in the upload pass, no variants
pregenerated, and a database of its own, migrated fresh: pgqueuer's tables hold this pass's jobs only.

  workers_upload_200k        unique ~200 KB phone JPEGs (the body of upload_200k), 8 connections;
                             then the backlog: thumbnails still pending when the load stopped, and
                             the time from then until no row is pending (polled every 10 ms); and
                             queue latency, enqueue to start, of every job queued in the window
                             (pgqueuer_log: `picked` minus `queued`, per job)
  workers_upload_floor       upload_floor.py's `upload` loops on every core, half of the time right
                             before the uploads and half right after (drift weighs on both alike)
  workers_thumbnail_latency  the 4000x3000 JPEG of scenario 4 uploaded one at a time, new content
                             each, the row polled in the database every 5 ms (the API is left alone)
  workers_thumbnail_floor    thumbnail_floor.py's Pillow draft + thumbnail + encode of the same
                             file, run by run in turn with the uploads (which goes first alternates)

15.2's figure runs from the job's `queued` entry in pgqueuer_log to the first poll that sees the row
ready (PostgreSQL's clock against this process's: one machine, one clock). Not from the 201, as
scenario 4 does: the job is queued once the original is stored and its row committed, before the
answer leaves, and a worker may start on it while the answer is on its way, which ready - 201 would
leave out (`queued_before_answer_median_ms` says how much). Not from the request's start either,
which would add the upload's own validation and store. No thumbnail work can start before the job
is queued, and the worker decodes the original again from storage (the frame the upload's validation
decoded stays in the API process), so queued -> ready holds all of the thumbnail's wait and work.
Ready - 201 and ready - start are reported too.

The layout, 2 API processes and 2 worker processes, is the defaults' (WEB_CONCURRENCY=2 in
backend/Dockerfile; WORKER_PROCESSES=0, one per core). Under load the kernel shares the cores between
the API's process group and the tier's (each is a session of its own, as containers would be a
cgroup each), whatever the number of processes in each, so one worker process or two made the same
upload rate and backlog; with the API idle, two drain the backlog faster than one, which left a
sixth of the machine idle (docs/performance.md has the figures).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx

import client_scenarios
import images
import thumbnail_floor
import upload_floor
from client_scenarios import Account
from database import BenchDatabase
from services import Service, process_tree
from wrk import upload_lua

if TYPE_CHECKING:
    from harness import Run

API_PROCESSES = 2  # WEB_CONCURRENCY's default in backend/Dockerfile
WORKER_PROCESSES = 2  # WORKER_PROCESSES=0: one per core, on this 2-core machine
UPLOAD_CONNECTIONS = 8  # as the upload pass's 200 KB scenarios
THUMBNAIL_JOB = "thumbnail"  # app.jobs.kinds.THUMBNAIL
BACKLOG_POLL_SECONDS = 0.01
BACKLOG_LIMIT_SECONDS = 60.0
READY_POLL_SECONDS = 0.005
READY_DEADLINE_SECONDS = 30.0
LATENCY_SAMPLES = 20
SMOKE_LATENCY_SAMPLES = 5


class WorkerPass:
    """The worker tier's scenarios on a layout this pass starts and stops; results go to `run.scenarios`."""

    def __init__(self, run: Run, database: BenchDatabase, thumbnail_source: bytes) -> None:
        self.run = run
        self.database = database
        self.thumbnail_source = thumbnail_source  # scenario 4's 4000x3000 JPEG
        self.upload_body = images.upload_jpeg()  # upload_200k's
        self.layout = f"{API_PROCESSES} API + {WORKER_PROCESSES} worker processes"

    def execute(self) -> None:
        run = self.run
        settings = {
            "DATABASE_URL": self.database.url,
            "JOB_QUEUE": "postgres",
            "STORAGE_BACKEND": "local",
            "LOCAL_STORAGE_PATH": str(run.workdir / "worker-images"),
            # Every thumbnail job is a thumbnail and nothing else, whatever the default becomes.
            "VARIANT_PREGENERATE": "",
        }
        run.log(f"workers: {self.layout}, JOB_QUEUE=postgres, on {self.database.name}")
        api = run.start_chitram("chitram-api", workers=API_PROCESSES, **settings)
        tier = run.processes.job_workers("chitram-workers", env=run.app_env(**settings), processes=WORKER_PROCESSES)
        with httpx.Client(base_url=api.base_url, timeout=60) as client:
            account = client_scenarios.register(client)
            checksums = client_scenarios.check_variants_are_new(
                client, account.token, self.upload_body, filename="phone.jpg", content_type="image/jpeg"
            )
            run.log(f"workers: stamped variants stored as new content ({', '.join(c[:8] for c in checksums)})")
        self.drain()
        floor_before = self.floor_half("before")
        self.uploads(api, tier, account)
        self.keep_floor([floor_before, self.floor_half("after")])
        self.thumbnail_latency(api)
        run.processes.stop(tier)
        run.processes.stop(api)

    # -- 1. uploads under load, the backlog, queue latency -------------------------------------

    def uploads(self, api: Service, tier: Service, account: Account) -> None:
        run = self.run
        name = "workers_upload_200k"
        api_pids, tier_pids = process_tree(api.pid), process_tree(tier.pid)
        lua = upload_lua(
            self.upload_body,
            account.token,
            body_path=run.workdir / f"{name}.body",
            filename="phone.jpg",
            content_type="image/jpeg",
            unique=True,
        )
        figures = run.wrk(
            name,
            api,
            client_scenarios.UPLOAD_PATH,
            connections=UPLOAD_CONNECTIONS,
            lua=lua,
            measured_pids=api_pids + tier_pids,
            measured_name=f"{self.layout}, together",
            timeout_seconds=30,
        )
        backlog, drained = self.drain(since=figures["ended_at"])
        run.log(f"workers: {backlog} thumbnails pending when the load stopped, none {drained} s later")
        window_start = datetime.fromtimestamp(figures["ended_at"] - figures["duration_s"], UTC)
        jobs = self.database.queued_jobs(THUMBNAIL_JOB, window_start)
        waits = [job.wait_ms for job in jobs if job.wait_ms is not None]
        if not waits:
            raise RuntimeError(f"{name}: pgqueuer's log holds no picked thumbnail job since {window_start}")
        by_pid = figures.get("server_cpu_s_by_pid", {})
        api_cpu = sum(by_pid.get(str(pid), 0.0) for pid in api_pids)
        tier_cpu = sum(by_pid.get(str(pid), 0.0) for pid in tier_pids)
        requests = figures["requests"]
        # Thumbnails the tier made inside the window: the window began with none pending (wrk waits
        # for quiet), so all but the backlog at its end.
        made = max(1, requests - backlog)
        figures.update(
            {
                "layout": self.layout,
                "api_processes": API_PROCESSES,
                "worker_processes": WORKER_PROCESSES,
                "thumbnail_backlog": backlog,
                "backlog_drained_seconds": drained,
                "queue_jobs": len(jobs),
                "queue_jobs_not_picked": len(jobs) - len(waits),
                "queue_wait_p50_ms": round(_percentile(waits, 50), 1),
                "queue_wait_p99_ms": round(_percentile(waits, 99), 1),
                "queue_wait_max_ms": round(max(waits), 1),
                "api_cpu_ms_per_upload": round(api_cpu * 1000 / requests, 2) if requests else None,
                "worker_cpu_ms_per_thumbnail": round(tier_cpu * 1000 / made, 2),
                **client_scenarios.all_new(self.database, name, account),
            }
        )
        run.log(
            f"workers: queue latency p50 {figures['queue_wait_p50_ms']} ms, p99 {figures['queue_wait_p99_ms']} ms "
            f"over {len(jobs)} jobs; CPU {figures['api_cpu_ms_per_upload']} ms per upload in the API processes, "
            f"{figures['worker_cpu_ms_per_thumbnail']} ms per thumbnail in the workers"
        )

    def drain(self, since: float | None = None) -> tuple[int, float]:
        """Poll until no image row is pending: (rows pending at the first poll, seconds since `since` or now)."""
        started = time.time() if since is None else since
        backlog, until = asyncio.run(_wait_until_none_pending(self.database.dsn))
        if until is None:
            raise RuntimeError(f"workers: thumbnails still pending after {BACKLOG_LIMIT_SECONDS:g} s")
        return backlog, round(until - started, 3)

    def floor_half(self, when: str) -> dict[str, Any]:
        """Half of the upload floor's time, in the plain loops of upload_floor.py, with the layout at rest."""
        run = self.run
        folder = run.workdir / f"worker-upload-floor-{when}"
        folder.mkdir()
        seconds = run.args.duration / 2
        run.log(f"workers: upload floor {when} the uploads, {upload_floor.cores()} plain loops for {seconds:g} s")
        return upload_floor.measure(
            self.upload_body, seconds=seconds, processes=upload_floor.cores(), folder=folder, work="upload"
        )

    def keep_floor(self, halves: list[dict[str, Any]]) -> None:
        """The floor of both halves together: the uploads' window sits between them, so drift weighs on both."""
        uploads = sum(half["uploads"] for half in halves)
        seconds = sum(half["seconds"] for half in halves)
        cpu_ms = sum(half["cpu_ms_per_upload"] * half["uploads"] for half in halves if half["cpu_ms_per_upload"])
        figures = {
            **halves[0],
            "seconds": seconds,
            "uploads": uploads,
            "uploads_by_process": [
                sum(counts) for counts in zip(*(h["uploads_by_process"] for h in halves), strict=True)
            ],
            "uploads_per_s": round(uploads / seconds, 1),
            "cpu_ms_per_upload": round(cpu_ms / uploads, 2) if uploads else None,
            "halves_uploads_per_s": [half["uploads_per_s"] for half in halves],
        }
        self.run.scenarios["workers_upload_floor"] = figures
        self.run.log(
            f"workers: floor {figures['uploads_per_s']} uploads/s (halves {figures['halves_uploads_per_s']}), "
            f"{figures['cpu_ms_per_upload']} ms of CPU each"
        )

    # -- 2. one thumbnail at a time, against its floor -------------------------------------------

    def thumbnail_latency(self, api: Service) -> None:
        run = self.run
        samples = SMOKE_LATENCY_SAMPLES if run.args.smoke else LATENCY_SAMPLES
        run.log(f"workers: thumbnail latency, {samples} uploads of {len(self.thumbnail_source):,} B one at a time")
        with httpx.Client(base_url=api.base_url, timeout=60) as client:
            token = client_scenarios.register(client).token
        since = datetime.now(UTC)
        timings, floor_ms = asyncio.run(
            _latency_samples(api.base_url, token, self.database.dsn, self.thumbnail_source, samples)
        )
        jobs = self.database.queued_jobs(THUMBNAIL_JOB, since)
        # One job per upload, one upload at a time: the jobs in the order queued are the samples'.
        if len(jobs) != len(timings):
            raise RuntimeError(f"workers: {len(timings)} latency uploads queued {len(jobs)} thumbnail jobs")
        # (started, answered, ready) of each upload whose thumbnail became ready
        ready = [(s.started_at, s.answered_at, s.ready_at) for s in timings if s.ready_at is not None]
        if not ready:
            raise RuntimeError("workers: no thumbnail became ready")
        after_answer = [(done - answered) * 1000 for _, answered, done in ready]

        def median(values: list[float]) -> float:
            return round(statistics.median(values), 1)

        run.scenarios["workers_thumbnail_latency"] = {
            "kind": "client",
            "layout": self.layout,
            "samples": samples,
            "failures": samples - len(ready),
            "source_bytes": len(self.thumbnail_source),
            "poll_interval_ms": READY_POLL_SECONDS * 1000,
            "median_after_queued_ms": median(
                [
                    (sample.ready_at - job.queued_at.timestamp()) * 1000
                    for sample, job in zip(timings, jobs, strict=True)
                    if sample.ready_at is not None
                ]
            ),
            "median_after_upload_ms": median(after_answer),
            "max_after_upload_ms": round(max(after_answer), 1),
            "median_end_to_end_ms": median([(done - started) * 1000 for started, _, done in ready]),
            "median_upload_ms": median([(answered - started) * 1000 for started, answered, _ in ready]),
            "queued_before_answer_median_ms": median(
                [
                    (sample.answered_at - job.queued_at.timestamp()) * 1000
                    for sample, job in zip(timings, jobs, strict=True)
                ]
            ),
            "median_queue_wait_ms": median([job.wait_ms for job in jobs if job.wait_ms is not None]),
        }
        run.scenarios["workers_thumbnail_floor"] = {
            "kind": "loop",
            "runs": len(floor_ms),
            "floor_median_ms": median(floor_ms),
            "floor_min_ms": round(min(floor_ms), 1),
        }
        latency = run.scenarios["workers_thumbnail_latency"]
        run.log(
            f"workers: thumbnail ready {latency['median_after_upload_ms']} ms after the 201 (median; queue wait "
            f"{latency['median_queue_wait_ms']} ms), floor {median(floor_ms)} ms"
        )


class _Sample:
    """One latency upload's moments, Unix time: request sent, 201 received, row seen ready (None: never)."""

    def __init__(self, started_at: float, answered_at: float, ready_at: float | None) -> None:
        self.started_at = started_at
        self.answered_at = answered_at
        self.ready_at = ready_at


async def _latency_samples(
    base_url: str, token: str, dsn: str, source: bytes, samples: int
) -> tuple[list[_Sample], list[float]]:
    """Upload new copies of `source` one at a time, each followed (or preceded, by turns) by a floor run."""
    timings: list[_Sample] = []
    floor_ms: list[float] = []

    def floor_run() -> None:
        started = time.perf_counter()
        thumbnail_floor.floor_once(source)
        floor_ms.append((time.perf_counter() - started) * 1000)

    connection = await asyncpg.connect(dsn)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            thumbnail_floor.floor_once(source)  # warm-up: plugin imports, first allocations
            for index in range(samples):
                # Which goes first alternates, so neither always finds the other's data in the caches.
                if index % 2:
                    floor_run()
                timings.append(await _upload_until_ready(client, connection, token, images.fresh(source), index))
                if not index % 2:
                    floor_run()
    finally:
        await connection.close()
    return timings, floor_ms


async def _upload_until_ready(
    client: httpx.AsyncClient, connection: asyncpg.Connection, token: str, body: bytes, index: int
) -> _Sample:
    started = time.time()
    response = await client.post(
        client_scenarios.UPLOAD_PATH,
        files={"file": (f"worker-thumb-{index}.jpg", body, "image/jpeg")},
        headers={"Authorization": f"Bearer {token}"},
    )
    answered = time.time()
    if response.status_code != 201:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
    image_id = uuid.UUID(response.json()["id"])
    while time.time() < answered + READY_DEADLINE_SECONDS:
        status = await connection.fetchval("SELECT thumbnail_status FROM images WHERE id = $1", image_id)
        if status == "ready":
            return _Sample(started, answered, time.time())
        if status == "failed":
            break
        await asyncio.sleep(READY_POLL_SECONDS)
    return _Sample(started, answered, None)


async def _wait_until_none_pending(dsn: str) -> tuple[int, float | None]:
    """(Rows pending at the first poll, Unix time when none was), polling on one connection; None: time ran out."""
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.time() + BACKLOG_LIMIT_SECONDS
        first: int | None = None
        while time.time() < deadline:
            pending = int(await connection.fetchval("SELECT count(*) FROM images WHERE thumbnail_status = 'pending'"))
            if first is None:
                first = pending
            if pending == 0:
                return first, time.time()
            await asyncio.sleep(BACKLOG_POLL_SECONDS)
        return first or 0, None
    finally:
        await connection.close()


def _percentile(values: list[float], percent: float) -> float:
    """Nearest rank: the smallest value with at least `percent`% of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[int(rank) - 1]
