"""A bound on how many uploads one process handles at once.

Uploads hold memory (the body) and CPU (decoding, thumbnails); past the limit a new upload waits a
little for a slot and is then turned away with 503 and `Retry-After`, instead of queueing without
bound until the process runs out of memory.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from app.errors import ServiceUnavailable
from app.observability.metrics import UPLOAD_SLOT_TIMEOUTS, UPLOAD_SLOT_WAITS


class UploadSlots:
    """At most `limit` uploads at a time; a caller waits up to `timeout_seconds` for a slot."""

    def __init__(self, limit: int, timeout_seconds: float, *, retry_after_seconds: int | None = None) -> None:
        self._limit = limit
        self.timeout_seconds = timeout_seconds
        # By default suggest waiting as long as we just did (at least 1 s, at most a minute).
        self.retry_after_seconds = retry_after_seconds or min(60, max(1, math.ceil(timeout_seconds)))
        # A semaphore, not a CapacityLimiter: a CapacityLimiter must be released by the task that took
        # it, and FastAPI may run a dependency's exit in a different task from its entry.
        # fast_acquire: a free slot is taken without first yielding to the event loop, which under
        # load costs a loop turn (milliseconds) on every upload; cancellation is still checked.
        self._semaphore = anyio.Semaphore(limit, max_value=limit, fast_acquire=True)

    @property
    def limit(self) -> int:
        """The configured number of slots."""
        return self._limit

    @property
    def in_use(self) -> int:
        """Slots held right now."""
        return self._limit - self._semaphore.value

    @property
    def waiting(self) -> int:
        """Callers queued for a slot right now."""
        return self._semaphore.statistics().tasks_waiting

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[None]:
        """Hold one slot for the block; raise `ServiceUnavailable` (503) if none frees up in time."""
        # anyio's semaphore gives a slot back if the waiter is cancelled (client gone, timeout) even
        # when the slot was handed over in the same instant, so waiting never leaks a slot.
        if self._semaphore.value == 0:
            UPLOAD_SLOT_WAITS.inc()
        with anyio.move_on_after(self.timeout_seconds) as waited:
            await self._semaphore.acquire()
        if waited.cancelled_caught:
            UPLOAD_SLOT_TIMEOUTS.inc()
            raise ServiceUnavailable(
                f"The server is busy with other uploads; try again in {self.retry_after_seconds} seconds.",
                details={"limit": self._limit, "waited_seconds": self.timeout_seconds},
                headers={"Retry-After": str(self.retry_after_seconds)},
            )
        try:
            yield
        finally:
            self._semaphore.release()
