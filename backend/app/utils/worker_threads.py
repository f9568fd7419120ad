"""Blocking work in a worker thread, handed over without first yielding to the event loop.

`anyio.to_thread.run_sync` yields to the event loop twice before the thread gets the work (its own
checkpoint, then its thread limiter's). Under load each yield waits a whole loop turn: in the upload
benchmark that made the hand-over 6 ms where a direct one took 2.4 (phase timing, issue 5). The two
hops on the upload's path, validate-hash-store and the thumbnail's render-and-store, go through
`run_blocking` instead; everything else keeps anyio's.

Cancellation keeps anyio's meaning. By default the caller waits for the thread even when its cancel
scope is cancelled (a thread cannot be stopped), gets its result, and the cancellation strikes at
the caller's next await, so the caller can still undo what the thread did (an upload removes the
blob it stored). With `abandon_on_cancel` the caller leaves at once and the thread finishes on its
own. As with anyio, the thread runs in a copy of the caller's context variables, so what it does
belongs to the caller's trace span (copying costs a fraction of a microsecond: a context is an
immutable map). Its pool is separate from anyio's: the callers bound their own concurrency.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import anyio
import anyio.lowlevel

T = TypeVar("T")

# As many threads as anyio's default limiter allows. Threads start on demand and are reused; the
# callers bound their own concurrency (upload slots, render slots).
MAX_THREADS = 40
_executor = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="chitram-blocking")


async def run_blocking(func: Callable[[], T], *, abandon_on_cancel: bool = False) -> T:
    """Run `func()` in a worker thread and return its result (see the module's note on cancellation)."""
    # As anyio does, work asked for in a cancelled scope never starts (this yields only then).
    await anyio.lowlevel.checkpoint_if_cancelled()
    # A run_in_executor thread sees none of the caller's context variables (anyio's see a copy): give it one.
    future = asyncio.get_running_loop().run_in_executor(_executor, contextvars.copy_context().run, func)
    # As anyio.to_thread.run_sync: a shielded wait defers the scope's cancellation to the next await.
    with anyio.CancelScope(shield=not abandon_on_cancel):
        result = await future
    return result
