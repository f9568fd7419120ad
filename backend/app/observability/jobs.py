"""A background job's figures: how long it waited in its queue, how long it ran, how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from pgqueuer.errors import RetryRequested

from app.observability.metrics import JOB_DURATION, JOB_WAIT, JOBS


@contextlib.contextmanager
def observed_job(kind: str, queued_at: datetime | None = None) -> Iterator[None]:
    """Count the job in the block: `done` if it returns, `retried` if cancelled (handed back), else `failed`.

    A thumbnail whose render fails still ends its job normally (the row records the failure and its
    retry); those failures are `chitram_image_stage_failures_total{stage="thumbnail"}`.
    """
    if queued_at is not None:
        JOB_WAIT.labels(kind).observe(max(0.0, (datetime.now(UTC) - queued_at).total_seconds()))
    started = time.perf_counter()
    outcome = "failed"
    try:
        yield
        outcome = "done"
    except BaseException as error:
        if _handed_back(error):
            outcome = "retried"
        raise
    finally:
        JOB_DURATION.labels(kind).observe(time.perf_counter() - started)
        JOBS.labels(kind, outcome).inc()


def _handed_back(error: BaseException) -> bool:
    # A stopping worker hands its job back to pgqueuer (RetryRequested) or is cancelled.
    return isinstance(error, asyncio.CancelledError | RetryRequested)
