"""Traces (issue 17): one upload is one connected trace, from its request to its thumbnail job.

Real `python -m app` (and `python -m app.worker`) processes on PostgreSQL, Redis and S3 (moto over
HTTP) send their spans by OTLP/HTTP to a receiver in this test (tests.otlp_receiver), as they would to a
collector. Both job queues are covered: this process's (JOB_QUEUE=memory) and the worker tier's
(JOB_QUEUE=postgres), where the job crosses to another process in pgqueuer's job headers. Without the
OTEL_* variables that ask for traces, a process installs nothing at all.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.config import Settings
from tests.api.waiting import wait_until
from tests.conftest import BACKEND_DIR, CORPUS_DIR, _truncate_tables
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.servers import app_server_env, app_servers, settings_env, worker_tier

START_TIMEOUT_SECONDS = 120  # an import of the app takes seconds of CPU on a busy 2-core machine
TRACE_DEADLINE_SECONDS = 60  # from the 201 to the last span of the job at the receiver
UPLOAD_ROUTE = "POST /api/v1/images/upload"


def unique_jpeg() -> bytes:
    """A corpus JPEG with EXIF, XMP and an ICC profile (stripping has work), one corner repainted: new
    content, so the upload is stored and decoded and gets a thumbnail job of its own."""
    picture = Image.open(CORPUS_DIR / "pil_sample_rgb.jpg")
    colour = tuple(uuid.uuid4().bytes[:3])
    picture.paste(colour, (0, 0, 32, 32))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=95, exif=picture.info["exif"], icc_profile=picture.info["icc_profile"])
    return buffer.getvalue()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    """A receiver that every server started by this test sends its spans to, within a tenth of a second.

    The servers take this process's environment (tests.servers.app_server_env), OTEL_* included.
    """
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    with otlp_receiver() as receiving:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiving.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        yield receiving


@pytest.fixture
async def emptied_afterwards(settings: Settings) -> AsyncIterator[None]:
    """The servers' rows go with the test (their objects went with its bucket), as the `app` fixture's do."""
    yield
    await _truncate_tables(settings.database_url)


async def upload_and_wait_for_thumbnail(base_url: str) -> tuple[str, str]:
    """The new image's id and the upload's request id, once its thumbnail is ready."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        response = await client.post(
            "/api/v1/images/upload", files={"file": ("camera.jpg", unique_jpeg(), "image/jpeg")}
        )
        assert response.status_code == 201, response.text
        image_id = str(response.json()["id"])

        async def thumbnail_ready() -> bool:
            status = (await client.get(f"/api/v1/images/{image_id}")).json()["thumbnail_status"]
            assert status != "failed"
            return bool(status == "ready")

        await wait_until(thumbnail_ready, what=f"the thumbnail of {image_id}", within=60)
    return image_id, response.headers["X-Request-ID"]


class Trace:
    """The spans of one trace id, with their parent links."""

    def __init__(self, spans: list[ReceivedSpan]) -> None:
        self.spans = spans
        self._children: dict[str, list[ReceivedSpan]] = {}
        for span in spans:
            self._children.setdefault(span.parent_span_id, []).append(span)
        self._ids = {span.span_id for span in spans}

    def roots(self) -> list[ReceivedSpan]:
        return self._children.get("", [])

    def orphans(self) -> list[ReceivedSpan]:
        """Spans whose parent is not in the trace (not received, or in another trace)."""
        return [span for span in self.spans if span.parent_span_id and span.parent_span_id not in self._ids]

    def below(self, ancestor: ReceivedSpan) -> list[ReceivedSpan]:
        found: list[ReceivedSpan] = []
        waiting = list(self._children.get(ancestor.span_id, []))
        while waiting:
            span = waiting.pop()
            found.append(span)
            waiting.extend(self._children.get(span.span_id, []))
        return found

    def parent_of(self, span: ReceivedSpan) -> ReceivedSpan | None:
        return next((other for other in self.spans if other.span_id == span.parent_span_id), None)


def is_sql(span: ReceivedSpan) -> bool:
    return span.kind == "client" and span.attribute("db.system.name", "db.system") == "postgresql"


def is_redis(span: ReceivedSpan) -> bool:
    return span.kind == "client" and span.attribute("db.system.name", "db.system") == "redis"


def is_s3_put(span: ReceivedSpan) -> bool:
    return span.kind == "client" and span.attribute("http.request.method", "http.method") == "PUT"


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.name == name]


def upload_trace(receiver: OtlpReceiver) -> Trace | None:
    """The trace of the one upload the test made, once its server span has arrived."""
    spans = receiver.spans()
    servers = [span for span in spans if span.kind == "server" and span.name == UPLOAD_ROUTE]
    assert len(servers) <= 1, [str(span) for span in servers]
    if not servers:
        return None
    return Trace([span for span in spans if span.trace_id == servers[0].trace_id])


def what_is_missing(trace: Trace, image_id: str, *, job_service: str) -> list[str]:
    """What a whole, connected trace of this upload lacks (nothing, once every span has arrived)."""
    missing = []
    if trace.orphans():
        missing.append(f"the parents of {[str(span) for span in trace.orphans()]}")
    jobs = [
        span for span in named(trace.spans, "chitram.job.thumbnail") if span.attribute("chitram.subject") == image_id
    ]
    if len(jobs) != 1:
        return [*missing, "the thumbnail job's span"]
    job = jobs[0]
    in_job = trace.below(job)
    [server] = [span for span in trace.spans if span.name == UPLOAD_ROUTE]
    in_request = [span for span in trace.below(server) if span is not job and span not in in_job]
    expected = {
        "the request's validate span": named(in_request, "chitram.validate"),
        "the request's strip span": named(in_request, "chitram.strip"),
        "the request's SQL spans": [span for span in in_request if is_sql(span)],
        "the request's Redis spans": [span for span in in_request if is_redis(span)],
        "the S3 PUT of the original, in the store span": [
            span for store in named(in_request, "chitram.store") for span in trace.below(store) if is_s3_put(span)
        ],
        "the job's render span": named(in_job, "chitram.thumbnail"),
        "the job's SQL spans": [span for span in in_job if is_sql(span)],
        "the S3 PUT of the thumbnail, in the job's store span": [
            span for store in named(in_job, "chitram.store") for span in trace.below(store) if is_s3_put(span)
        ],
    }
    missing += [what for what, found in expected.items() if not found]
    if job.service != job_service:
        missing.append(f"the job's span from {job_service} (it came from {job.service})")
    return missing


async def whole_trace(receiver: OtlpReceiver, image_id: str, *, job_service: str) -> Trace:
    async def complete() -> Trace | None:
        trace = upload_trace(receiver)
        return trace if trace is not None and not what_is_missing(trace, image_id, job_service=job_service) else None

    try:
        return await wait_until(complete, what="the upload's whole trace", within=TRACE_DEADLINE_SECONDS)
    except AssertionError:
        trace = upload_trace(receiver)
        shown = "no server span" if trace is None else what_is_missing(trace, image_id, job_service=job_service)
        raise AssertionError(f"the upload's trace is incomplete: missing {shown}") from None


def assert_one_trace_names_the_image(receiver: OtlpReceiver, trace: Trace, image_id: str) -> None:
    """Every span that names the image (its job, the S3 calls for its thumbnail) is in the upload's trace."""
    naming = [
        span
        for span in receiver.spans()
        if span.attribute("chitram.subject") == image_id
        or (span.kind == "client" and image_id in str(span.attribute("url.full", "http.url")))
    ]
    assert naming
    assert {span.trace_id for span in naming} == {trace.spans[0].trace_id}, [str(span) for span in naming]


@pytest.mark.usefixtures("emptied_afterwards")
async def test_an_upload_and_its_thumbnail_job_are_one_connected_trace(
    settings: Settings, tmp_path: Path, receiver: OtlpReceiver
) -> None:
    with app_servers(settings, tmp_path, 1, start_timeout=START_TIMEOUT_SECONDS) as [(api, _log)]:
        image_id, request_id = await upload_and_wait_for_thumbnail(api)
        trace = await whole_trace(receiver, image_id, job_service="chitram-api")

    [root] = trace.roots()
    assert (root.name, root.kind, root.service) == (UPLOAD_ROUTE, "server", "chitram-api")
    assert root.attribute("chitram.request_id") == request_id  # a user's report leads to the trace too
    [job] = named(trace.spans, "chitram.job.thumbnail")
    assert job.kind == "consumer"
    assert trace.parent_of(job) in [root, *trace.below(root)]  # the request queued it, in this process
    assert_one_trace_names_the_image(receiver, trace, image_id)


@pytest.mark.usefixtures("emptied_afterwards")
async def test_a_job_run_by_the_worker_tier_stays_in_the_uploads_trace(
    settings: Settings, tmp_path: Path, receiver: OtlpReceiver
) -> None:
    queued = settings.model_copy(update={"job_queue": "postgres"})
    with (
        app_servers(queued, tmp_path, 1, start_timeout=START_TIMEOUT_SECONDS) as [(api, _log)],
        worker_tier(queued, tmp_path / "worker.log"),
    ):
        image_id, _request_id = await upload_and_wait_for_thumbnail(api)
        trace = await whole_trace(receiver, image_id, job_service="chitram-worker")

    [root] = trace.roots()
    assert (root.name, root.service) == (UPLOAD_ROUTE, "chitram-api")
    # The API queues the job under pgqueuer's send span; a worker processes it under its process span.
    [job] = named(trace.spans, "chitram.job.thumbnail")
    process = trace.parent_of(job)
    assert process is not None
    assert (process.name, process.kind, process.service) == ("process thumbnail", "consumer", "chitram-worker")
    send = trace.parent_of(process)
    assert send is not None
    assert (send.name, send.kind, send.service) == ("send thumbnail", "producer", "chitram-api")
    assert send in trace.below(root)
    assert_one_trace_names_the_image(receiver, trace, image_id)


# Run in a fresh interpreter: what building the serving app (as `python -m app` does) installs.
INSTALLED_PROBE = """
import json, sys
import redis.asyncio, urllib3.connectionpool
from opentelemetry import trace
from app.main import app_factory
from app.observability import tracing

app = app_factory()
with tracing.span("probe"):
    in_a_span = trace.get_current_span().get_span_context().is_valid
print(json.dumps({
    "tracer_provider": type(trace.get_tracer_provider()).__name__,
    "instrumentation_modules": any(name.startswith("opentelemetry.instrumentation.") for name in sys.modules),
    "request_spans": bool(getattr(app, "_is_instrumented_by_opentelemetry", False)),
    "s3_calls_wrapped": hasattr(urllib3.connectionpool.HTTPConnectionPool.urlopen, "__wrapped__"),
    "redis_calls_wrapped": hasattr(redis.asyncio.Redis.execute_command, "__wrapped__"),
    "span_records": in_a_span,
}))
"""
NOTHING_INSTALLED = {
    "tracer_provider": "ProxyTracerProvider",
    "instrumentation_modules": False,
    "request_spans": False,
    "s3_calls_wrapped": False,
    "redis_calls_wrapped": False,
    "span_records": False,
}


@pytest.mark.parametrize(
    ("asked", "installed"),
    [
        pytest.param({}, False, id="no OTEL variables"),
        pytest.param({"OTEL_SERVICE_NAME": "chitram-test"}, False, id="no endpoint"),
        pytest.param({"OTEL_EXPORTER_OTLP_ENDPOINT": "endpoint", "OTEL_SDK_DISABLED": "true"}, False, id="disabled"),
        pytest.param({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "traces endpoint"}, True, id="traces endpoint"),
    ],
)
def test_tracing_installs_nothing_unless_an_endpoint_is_named(
    settings: Settings, receiver: OtlpReceiver, asked: dict[str, str], installed: bool
) -> None:
    env = {
        name: value for name, value in app_server_env(**settings_env(settings)).items() if not name.startswith("OTEL_")
    }
    endpoints = {"endpoint": receiver.url, "traces endpoint": f"{receiver.url}/v1/traces"}
    env.update({name: endpoints.get(value, value) for name, value in asked.items()})
    probe = subprocess.run(
        [sys.executable, "-c", INSTALLED_PROBE], cwd=BACKEND_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr
    facts = json.loads(probe.stdout.splitlines()[-1])
    if installed:
        assert facts == {"tracer_provider": "TracerProvider", **dict.fromkeys(list(NOTHING_INSTALLED)[1:], True)}
        assert [span.name for span in receiver.spans()] == ["probe"]  # sent on exit
    else:
        assert facts == NOTHING_INSTALLED
        assert receiver.requests == 0


@pytest.mark.usefixtures("emptied_afterwards")
async def test_spans_keep_no_query_a_token_or_a_signature_rides_in(
    settings: Settings, tmp_path: Path, receiver: OtlpReceiver
) -> None:
    with app_servers(settings, tmp_path, 1, start_timeout=START_TIMEOUT_SECONDS) as [(api, _log)]:
        async with httpx.AsyncClient(base_url=api, timeout=60) as client:
            created = (
                await client.post("/api/v1/images/upload", files={"file": ("a.jpg", unique_jpeg(), "image/jpeg")})
            ).json()
            token = created["delete_token"]
            deleted = await client.delete(f"/api/v1/images/{created['id']}", params={"delete_token": token})
            assert deleted.status_code == 204

        def deletion_traced() -> bool:
            return any(
                span.kind == "server" and span.name == "DELETE /api/v1/images/{image_id}" for span in receiver.spans()
            )

        async def arrived() -> bool:
            return deletion_traced()

        await wait_until(arrived, what="the delete's server span", within=TRACE_DEADLINE_SECONDS)
    every_value = [str(value) for span in receiver.spans() for value in span.attributes.values()]
    assert every_value
    assert not [value for value in every_value if token in value]
