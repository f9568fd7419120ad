"""What an operator sees of a running Chitram: Prometheus metrics, OpenTelemetry traces, logs with request ids.

`metrics` defines every metric and renders a scrape summed over processes (`app.api.metrics` serves it),
`request_context` gives each request its id and its metrics in one ASGI layer, `logs` formats log lines
(JSON in production), `tracing` sets up OpenTelemetry when `OTEL_*` asks for it, and `stages` times one
step of image work as both a metric and a span (ADR 0018).
"""
