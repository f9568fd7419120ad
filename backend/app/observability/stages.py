"""One step of image work (validate, strip, store, thumbnail, variant), timed as a metric and a span."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Literal

from app.observability import metrics, tracing

Stage = Literal["validate", "strip", "store", "thumbnail", "variant"]


@contextlib.contextmanager
def stage(name: Stage, **attributes: str | int) -> Iterator[None]:
    """Time `name`: `chitram_image_stage_duration_seconds`, a failure counted if it raises, and a span."""
    started = time.perf_counter()
    with tracing.span(f"chitram.{name}", **attributes):
        try:
            yield
        except BaseException:
            metrics.IMAGE_STAGE_FAILURES.labels(name).inc()
            raise
        finally:
            metrics.IMAGE_STAGE_DURATION.labels(name).observe(time.perf_counter() - started)
