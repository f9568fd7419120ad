"""Which traces are worth keeping: every request's and every job's, whole; not the sweeps' lone queries.

The background loops (thumbnail and expiry sweeps, lease renewals, the cache's invalidation listener)
run SQL and Redis commands every few seconds in every process, outside any request or job. Each such
call would be a trace of one client span: most of what an exporter sends, and nothing anyone reads.
A client span (SQL, Redis, S3) therefore starts no trace of its own; inside a trace it is kept. A
sweep that finds work opens a span of its own first (`tracing.span`), so what it queues is traced.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes


class _RootsOfWork(Sampler):
    """Starts a trace for a request, a job or a step of Chitram's own; never for a lone client call."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "RootsOfWork"


def work_sampler() -> Sampler:
    """Parent-based (a span follows its parent's decision); a trace starts at anything but a client span."""
    return ParentBased(root=_RootsOfWork())
