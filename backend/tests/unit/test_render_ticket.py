"""Thumbnail renders stay bounded even when they outlive their time limit."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

from app.services.thumbnail_jobs import RenderTicket


async def _slot_frees_within(slots: threading.BoundedSemaphore, seconds: float) -> bool:
    acquired: bool = await anyio.to_thread.run_sync(lambda: slots.acquire(timeout=seconds))
    return acquired


async def test_a_timed_out_render_keeps_its_slot_until_its_thread_really_ends() -> None:
    slots = threading.BoundedSemaphore(1)
    assert slots.acquire(blocking=False)
    ticket = RenderTicket(slots)
    finish = threading.Event()

    def slow_render() -> Any:
        finish.wait(10)
        return "rendered"

    with pytest.raises(TimeoutError), anyio.fail_after(0.1):
        await anyio.to_thread.run_sync(ticket.run, slow_render, abandon_on_cancel=True)
    ticket.give_up()
    assert not slots.acquire(blocking=False)  # the abandoned thread still renders, and still counts
    finish.set()
    assert await _slot_frees_within(slots, 5)


def test_a_render_given_up_before_it_started_frees_the_slot_and_never_runs() -> None:
    slots = threading.BoundedSemaphore(1)
    assert slots.acquire(blocking=False)
    ticket = RenderTicket(slots)
    ticket.give_up()
    assert slots.acquire(blocking=False)
    slots.release()
    rendered: list[bool] = []
    with pytest.raises(TimeoutError):
        ticket.run(lambda: rendered.append(True))  # type: ignore[arg-type,return-value]
    assert rendered == []


def test_a_finished_render_frees_its_slot_once() -> None:
    slots = threading.BoundedSemaphore(1)
    assert slots.acquire(blocking=False)
    ticket = RenderTicket(slots)
    result: object = ticket.run(lambda: "ok")  # type: ignore[arg-type,return-value]
    assert result == "ok"
    ticket.give_up()  # nothing more to free: a second release would raise in a BoundedSemaphore
    assert slots.acquire(blocking=False)
