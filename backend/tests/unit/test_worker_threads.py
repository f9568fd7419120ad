"""`run_blocking`: the thread hop of uploads and thumbnail jobs, with anyio's cancellation semantics."""

from __future__ import annotations

import contextvars
import threading

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from app.utils.worker_threads import run_blocking


async def test_runs_in_a_worker_thread_and_returns_its_result() -> None:
    result = await run_blocking(lambda: threading.current_thread().name)
    assert result.startswith("chitram-blocking")
    assert result != threading.current_thread().name


async def test_the_thread_sees_the_callers_context_variables_and_cannot_change_them() -> None:
    # The current trace span is one: a step run in the thread must be a child of the caller's span.
    current = contextvars.ContextVar("current", default="none")
    current.set("the request's span")

    def look_and_change() -> str:
        seen = current.get()
        current.set("changed in the thread")
        return seen

    assert await run_blocking(look_and_change) == "the request's span"
    assert current.get() == "the request's span"


async def test_an_exception_in_the_thread_reaches_the_caller() -> None:
    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await run_blocking(fail)


async def _started(event: threading.Event) -> None:
    assert await anyio.to_thread.run_sync(event.wait, 5)


async def test_a_cancelled_caller_waits_for_the_thread_gets_its_result_and_is_cancelled_next() -> None:
    started, release = threading.Event(), threading.Event()
    outcome: list[str] = []
    scope = anyio.CancelScope()

    def store() -> str:
        started.set()
        release.wait(5)
        return "stored"

    async def caller() -> None:
        with scope:
            outcome.append(await run_blocking(store))  # so the caller can still undo what the thread did
            await anyio.lowlevel.checkpoint()  # the cancellation strikes here
            outcome.append("not reached")

    async with anyio.create_task_group() as group:
        group.start_soon(caller)
        await _started(started)
        scope.cancel()
        await anyio.sleep(0.05)
        assert outcome == []  # still waiting for the thread
        release.set()

    assert scope.cancelled_caught
    assert outcome == ["stored"]


async def test_with_abandon_on_cancel_the_caller_leaves_and_the_thread_finishes_alone() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def render() -> str:
        started.set()
        release.wait(5)
        finished.set()
        return "rendered"

    with anyio.move_on_after(5) as scope:
        async with anyio.create_task_group() as group:

            async def cancel_once_started() -> None:
                await _started(started)
                scope.cancel()

            group.start_soon(cancel_once_started)
            await run_blocking(render, abandon_on_cancel=True)
            pytest.fail("the caller should have left at once")

    assert scope.cancelled_caught
    assert not finished.is_set()
    release.set()
    assert await anyio.to_thread.run_sync(finished.wait, 5)


async def test_work_asked_for_in_a_cancelled_scope_never_starts() -> None:
    ran = threading.Event()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await run_blocking(ran.set)
        pytest.fail("the cancelled caller should not get here")
    assert scope.cancelled_caught
    await anyio.sleep(0.05)
    assert not ran.is_set()
