"""An OTLP/HTTP trace receiver on loopback, for tests: what a collector would be sent, decoded.

It answers `POST /v1/traces` (protobuf, as OTLPSpanExporter sends by default) like a collector does
and keeps every span with the service that sent it. No OpenTelemetry Collector binary is needed.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

TRACES_PATH = "/v1/traces"
KINDS = {
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}
Attribute = str | int | float | bool | None


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a trace's root
    name: str
    kind: str
    service: str
    attributes: dict[str, Attribute] = field(default_factory=dict)

    def attribute(self, *names: str) -> Attribute:
        """The first of `names` the span has (old and new semantic conventions name some things twice)."""
        return next((self.attributes[name] for name in names if name in self.attributes), None)

    def __str__(self) -> str:
        return f"{self.name} [{self.kind}, {self.service}]"


def _value(value: AnyValue) -> Attribute:
    which = value.WhichOneof("value")
    if which in ("string_value", "bool_value", "int_value", "double_value"):
        plain: Attribute = getattr(value, which)
        return plain
    return None if which is None else str(getattr(value, which))


def _attributes(pairs: Iterator[KeyValue] | list[KeyValue]) -> dict[str, Attribute]:
    return {pair.key: _value(pair.value) for pair in pairs}


class OtlpReceiver:
    """The spans received so far, and how many export requests brought them."""

    def __init__(self, url: str) -> None:
        self.url = url  # what OTEL_EXPORTER_OTLP_ENDPOINT names (the exporter adds /v1/traces)
        self.requests = 0
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def take(self, export: ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in export.resource_spans:
            service = str(_attributes(list(resource_spans.resource.attributes)).get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=KINDS.get(span.kind, "unspecified"),
                            service=service,
                            attributes=_attributes(list(span.attributes)),
                        )
                    )
        with self._lock:
            self.requests += 1
            self._spans.extend(received)


class _ExportHandler(BaseHTTPRequestHandler):
    server: _ReceiverServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != TRACES_PATH or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_error(404 if self.path != TRACES_PATH else 415)
            return
        self.server.receiver.take(ExportTraceServiceRequest.FromString(body))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        return  # quiet: a test's output is its own


class _ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: OtlpReceiver


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A receiver on a free loopback port, serving until the block ends."""
    server = _ReceiverServer(("127.0.0.1", 0), _ExportHandler)
    host, port = server.server_address[:2]
    server.receiver = OtlpReceiver(f"http://{host!s}:{port}")
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
