"""OpenTelemetry traces, off unless the standard `OTEL_*` variables name an exporter endpoint.

On (`configure_tracing`, once per process, before the app or the worker is built): spans are sent by
OTLP/HTTP in batches, for each request (ASGI), SQL statement (SQLAlchemy), Redis command, S3 call (the
minio client speaks urllib3), pgqueuer's send and process of a job, and Chitram's own steps (`span`,
`job_span`). A background job carries the W3C traceparent of the request that queued it (pgqueuer: in
the job's headers; this process's queue: with the upload's hand-off), so an upload and its thumbnail
job are one trace, whichever process runs the job.

Off: no exporter or instrumentation is imported, nothing is wrapped or patched, no middleware is
added, and `span` costs one check of a module variable.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer
    from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

AttributeValue = str | int | float | bool
# Probes and scrapes arrive every few seconds and say nothing a trace would add; static assets are many per
# page. OTEL_PYTHON_FASTAPI_EXCLUDED_URLS (or OTEL_PYTHON_EXCLUDED_URLS) replaces this list.
UNTRACED_URLS = "/health$,/livez$,/readyz$,/metrics$,/static/"
_EXCLUDED_URLS_VARIABLES = ("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")

# Set by `configure_tracing`; None means tracing is off in this process.
_provider: TracerProvider | None = None
_tracer: Tracer | None = None
_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint is named and the SDK is not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    endpoints = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    return any(environ.get(name, "").strip() for name in endpoints)


def configure_tracing(service_name: str) -> bool:
    """Turn tracing on for this process if the environment asks for it; whether it is on.

    `service_name` is the default: OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES)
    overrides it. Call it once per process before building the app or the worker, after any fork (the
    exporter runs a thread of its own), and `shutdown_tracing` at the end.
    """
    global _provider, _tracer
    if _provider is not None:
        return True
    if not tracing_requested():
        return False
    # Imported only now: a process without traces imports no exporter and no instrumentation.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from pgqueuer.adapters.tracing.opentelemetry import OpenTelemetryTracing
    from pgqueuer.ports.tracing import set_tracing_class

    from app.observability.sampling import work_sampler

    _warn_about_protocol()
    release = version("chitram")
    defaults = Resource.create({"service.name": service_name, "service.version": release})
    resource = defaults.merge(OTELResourceDetector().detect())  # the operator's names win
    # OTEL_TRACES_SAMPLER, when set, is the operator's choice; otherwise every trace of work is kept whole.
    sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else work_sampler()
    provider = TracerProvider(resource=resource, sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    URLLib3Instrumentor().instrument(tracer_provider=provider)  # the S3 client (minio) speaks urllib3
    set_tracing_class(OpenTelemetryTracing(tracer=provider.get_tracer("pgqueuer")))
    _provider = provider
    _tracer = provider.get_tracer("chitram", release)
    logger.info("tracing on: %s sends spans by OTLP/HTTP", resource.attributes.get("service.name"))
    return True


def _warn_about_protocol() -> None:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol.strip().lower() != "http/protobuf":
        logger.warning("OTLP protocol %r is not supported here: spans are sent as http/protobuf", protocol)


def instrument_app(app: FastAPI) -> None:
    """A server span for each request, outside every middleware; nothing at all when tracing is off.

    Call it on the built app, before it serves (the middleware stack is built on first use).
    """
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    excluded = None if any(os.environ.get(name) for name in _EXCLUDED_URLS_VARIABLES) else UNTRACED_URLS
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        excluded_urls=excluded,
        # One span per ASGI message of a body would bury an upload's steps under its chunks.
        exclude_spans=["receive", "send"],
        server_request_hook=_without_query,
    )


# Where the ASGI instrumentation records the URL. A query may hold a delete token or a share link's
# signature: like the logs, spans keep the path only.
_URL_ATTRIBUTES = ("http.url", "url.full", "http.target")


def _without_query(span: Span, _scope: dict[str, Any]) -> None:
    attributes = getattr(span, "attributes", None) or {}
    for name in _URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and "?" in value:
            span.set_attribute(name, value.split("?", 1)[0])
    if "url.query" in attributes:
        span.set_attribute("url.query", "")


def instrument_engine(*engines: AsyncEngine) -> None:
    """A span for each SQL statement these engines run (the primary's, a replica's); nothing when tracing is off."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        # A second engine in this process (an app whose lifespan runs again): it takes the first one's place.
        instrumentor.uninstrument()
    # skip_dep_check: the instrumentation declares SQLAlchemy < 2.1, but the cursor events it listens to are
    # unchanged in 2.1 (tests/integration/test_tracing.py sees the statements' spans).
    instrumentor.instrument(
        engines=[engine.sync_engine for engine in engines], tracer_provider=_provider, skip_dep_check=True
    )


def shutdown_tracing() -> None:
    """Send the spans still buffered and stop (a process's last step; spans made later are dropped)."""
    global _provider, _tracer
    provider = _provider
    if provider is None:
        return
    _provider = _tracer = None
    provider.shutdown()


def span(name: str, **attributes: AttributeValue) -> AbstractContextManager[object]:
    """A span named `name` under the current one when tracing is on; nothing at all when it is off.

    Attributes are recorded under `chitram.` (`span("chitram.store", kind="original")` records
    `chitram.kind`). A worker thread started by `run_blocking` or anyio continues the caller's span.
    """
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    return tracer.start_as_current_span(name, attributes=_namespaced(attributes))


def job_span(name: str, traceparent: str | None, **attributes: AttributeValue) -> AbstractContextManager[object]:
    """A background job's span, in the trace of the request that queued it.

    `traceparent` is what `current_traceparent` gave that request; without one (a job found by a sweep)
    the span continues the current one, or starts a trace of its own.
    """
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent}) if traceparent else None
    return tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes=_namespaced(attributes)
    )


def annotate_request(request_id: str) -> None:
    """Record the request's id on its server span, so a user's error report leads to its trace too."""
    if _tracer is None:
        return
    from opentelemetry.trace import get_current_span

    get_current_span().set_attribute("chitram.request_id", request_id)


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, for a job to continue this trace; None when off or outside one."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def _namespaced(attributes: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
    return {f"chitram.{key}": value for key, value in attributes.items()}
