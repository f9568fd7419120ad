"""Every Prometheus metric Chitram keeps, and the text a scrape of `/metrics` receives.

A serving process (`python -m app`, the worker supervisor) sets `PROMETHEUS_MULTIPROC_DIR` before
this module is imported (`app.observability.processes`), so prometheus_client keeps each value in a
per-process mmap file and a scrape of any one process sums the files of all of them: with several
uvicorn workers the figures are the host's, not one worker's picked at random. A process that only
imports the app (tests, scripts) keeps its values in memory, in the default registry.

Labels stay bounded: routes are templates (`/api/v1/images/{image_id}`), methods a fixed set, outcomes
error codes; nothing a client chooses freely becomes a label.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from importlib.metadata import version
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import AppError
from app.observability.processes import MULTIPROC_ENV

# Request latencies: from a near-cache hit (sub-millisecond) to a slow upload.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WORK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = tuple(float(2**power) for power in range(10, 28, 2))  # 1 KiB .. 128 MiB, by 4x

HTTP_REQUESTS = Counter(
    "chitram_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "chitram_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("chitram_http_requests_in_flight", "Requests being answered now.", multiprocess_mode="livesum")

UPLOADS = Counter(
    "chitram_uploads", "Uploads by outcome: stored, deduplicated, or the error code of a refusal.", ["outcome"]
)
UPLOAD_SIZE = Histogram(
    "chitram_upload_size_bytes", "Sizes of accepted uploads, by format.", ["format"], buckets=SIZE_BUCKETS
)
STORAGE_BYTES_WRITTEN = Counter(
    "chitram_storage_bytes_written", "Bytes written to storage, by kind of object.", ["kind"]
)
STORAGE_DURATION = Histogram(
    "chitram_storage_operation_duration_seconds",
    "Storage operations' latency (for reads, until the object is open), by backend and operation.",
    ["backend", "operation"],
    buckets=LATENCY_BUCKETS,
)
STORAGE_ERRORS = Counter(
    "chitram_storage_errors", "Storage operations that failed, by backend and operation.", ["backend", "operation"]
)

CACHE_LOOKUPS = Counter(
    "chitram_cache_lookups",
    "Metadata cache lookups by layer (near = this process, redis) and result (hit, miss, error).",
    ["layer", "result"],
)
DB_READS = Counter(
    "chitram_db_reads",
    "Reads that may run on the replica, by where they ran (primary, replica) and why (app.services.read_routing).",
    ["target", "reason"],
)
RATE_LIMIT_REFUSALS = Counter("chitram_rate_limit_refusals", "Requests refused by a rate limit, by limit.", ["limit"])
UPLOAD_SLOT_WAITS = Counter("chitram_upload_slot_waits", "Uploads that waited for an upload slot.")
UPLOAD_SLOT_TIMEOUTS = Counter(
    "chitram_upload_slot_timeouts", "Uploads refused with 503 after waiting too long for a slot."
)

IMAGE_STAGE_DURATION = Histogram(
    "chitram_image_stage_duration_seconds",
    "Image work by stage: validate, strip, store, thumbnail and variant renders.",
    ["stage"],
    buckets=WORK_BUCKETS,
)
IMAGE_STAGE_FAILURES = Counter("chitram_image_stage_failures", "Image work that failed, by stage.", ["stage"])

JOBS = Counter("chitram_jobs", "Background jobs run, by kind and outcome (done, failed, retried).", ["kind", "outcome"])
JOB_DURATION = Histogram(
    "chitram_job_duration_seconds", "Background jobs' running time, by kind.", ["kind"], buckets=WORK_BUCKETS
)
JOB_WAIT = Histogram(
    "chitram_job_wait_seconds",
    "Time from a job's queueing to its start, by kind.",
    ["kind"],
    buckets=WORK_BUCKETS,
)

DB_CONNECTIONS_IN_USE = Gauge(
    "chitram_db_connections_in_use", "Database connections checked out of the pools.", multiprocess_mode="livesum"
)
DB_POOL_CAPACITY = Gauge(
    "chitram_db_pool_capacity",
    "Connections the pools may open (pool size + overflow), summed over processes.",
    multiprocess_mode="livesum",
)
BUILD_INFO = Gauge("chitram_build_info", "Always 1; the version is a label.", ["version"], multiprocess_mode="max")

# Methods a client may send are free text: anything unusual shares one label value.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestTally:
    """The hot path's figures (requests, latency, in flight), kept in plain numbers and flushed each second.

    A prometheus_client update costs 1.5-3 us here (a lock and, across processes, an mmap write); the
    HTTP metrics take three or four per request, 5-8% of a near-cache hit's CPU. Adding to a dict
    costs a tenth of that. `flush` hands the sums to prometheus_client: on a timer in every serving
    process and at once before a scrape, so a scrape sees its own process exactly and others' figures
    at most a second old (Prometheus scrapes every 15 s or so).
    """

    def __init__(self) -> None:
        # (method, route, status) -> [sum of seconds, count per bucket..., count above the last bucket]
        self._pending: dict[tuple[str, str, int], list[float]] = {}
        self._lookups: dict[tuple[str, str], int] = {}
        self._reads: dict[tuple[str, str], int] = {}
        self.in_flight = 0

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        tally = self._pending.get((method, route, status))
        if tally is None:
            tally = self._pending[(method, route, status)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        tally[0] += seconds
        # A bucket counts what is <= its bound, so the first bound not below the value.
        tally[1 + bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def cache_lookup(self, layer: str, result: str) -> None:
        key = (layer, result)
        self._lookups[key] = self._lookups.get(key, 0) + 1

    def db_read(self, target: str, reason: str) -> None:
        key = (target, reason)
        self._reads[key] = self._reads.get(key, 0) + 1

    def flush(self, *, scraping: bool = False) -> None:
        """Hand the sums to prometheus_client (`scraping`: called while answering a scrape, not counted in flight)."""
        pending, self._pending = self._pending, {}
        for (method, route, status), tally in pending.items():
            label = method if method in _METHODS else "OTHER"
            HTTP_REQUESTS.labels(label, route, str(status)).inc(sum(tally[1:]))
            duration = HTTP_DURATION.labels(label, route)
            # prometheus_client has no "observe n values at once"; its child keeps the sum and one
            # value per bucket (tests/observability/test_metrics.py checks the exposition of these).
            duration._sum.inc(tally[0])
            for bucket, count in zip(duration._buckets, tally[1:], strict=True):
                if count:
                    bucket.inc(count)
        lookups, self._lookups = self._lookups, {}
        for (layer, result), count in lookups.items():
            CACHE_LOOKUPS.labels(layer, result).inc(count)
        reads, self._reads = self._reads, {}
        for (target, reason), count in reads.items():
            DB_READS.labels(target, reason).inc(count)
        HTTP_IN_FLIGHT.set(self.in_flight - 1 if scraping else self.in_flight)


TALLY = RequestTally()


async def flush_every_second() -> None:
    """A serving process's timer for `TALLY.flush`; runs until cancelled, flushing once more on the way out."""
    try:
        while True:
            await asyncio.sleep(1.0)
            TALLY.flush()
    finally:
        TALLY.flush()


@contextlib.contextmanager
def counted_refusals() -> Iterator[None]:
    """Count an upload that fails inside the block under its error code (a crash as INTERNAL_ERROR)."""
    try:
        yield
    except AppError as error:
        UPLOADS.labels(error.code).inc()
        raise
    except Exception:
        UPLOADS.labels(AppError.code).inc()
        raise


def count_accepted_upload(*, duplicate: bool, content_type: str, size: int) -> None:
    """An upload that got its row: new content (`stored`) or content stored before (`deduplicated`)."""
    UPLOADS.labels("deduplicated" if duplicate else "stored").inc()
    UPLOAD_SIZE.labels(content_type.removeprefix("image/")).observe(size)


def announce_build() -> None:
    """`chitram_build_info{version}` = 1, for dashboards to show what runs."""
    BUILD_INFO.labels(version("chitram")).set(1)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV)


class _Scrape(Collector):
    """One scrape's metrics: this host's (from `source`) and gauges read at scrape time (the database, the disk)."""

    def __init__(self, source: Collector | CollectorRegistry, snapshot: Iterable[Metric]) -> None:
        self._source = source
        self._snapshot = list(snapshot)

    def collect(self) -> Iterable[Metric]:
        yield from self._source.collect()
        yield from self._snapshot


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def exposition(snapshot: Iterable[Metric] = (), accept: str | None = None) -> tuple[bytes, str]:
    """The scrape's body and content type (the Prometheus text format, or OpenMetrics if `accept` asks).

    Every process's metrics summed, plus `snapshot`. Blocking (it reads every process's file): call
    `TALLY.flush` on the event loop first, then this in a thread.
    """
    directory = multiprocess_dir()
    source: Collector | CollectorRegistry = REGISTRY
    if directory is not None:
        _forget_dead_processes(directory)
        summed = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(summed, path=directory)  # type: ignore[no-untyped-call]
        source = summed
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Scrape(source, snapshot))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(scrape), content_type


def _forget_dead_processes(directory: str) -> None:
    """Drop the live gauges of processes that died unannounced (a uvicorn worker killed and replaced)."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            forget_process(pid)
        except PermissionError:
            continue  # alive, someone else's


def forget_process(pid: int) -> None:
    """A process ended: its live gauges (in flight, connections) stop counting; its counters stay."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def watch_pool(engine: AsyncEngine, capacity: int) -> None:
    """Count this engine's connections in use (checked out) and what its pool may hold."""
    DB_POOL_CAPACITY.inc(capacity)

    def checked_out(*_args: object) -> None:
        DB_CONNECTIONS_IN_USE.inc()

    def checked_in(*_args: object) -> None:
        DB_CONNECTIONS_IN_USE.dec()

    event.listen(engine.sync_engine, "checkout", checked_out)
    event.listen(engine.sync_engine, "checkin", checked_in)


def unwatch_pool(capacity: int) -> None:
    """The engine is gone: its capacity no longer counts."""
    DB_POOL_CAPACITY.dec(capacity)
