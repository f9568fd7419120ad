"""Thumbnail renders stay bounded even when they outlive their time limit."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from app.media.thumbnails import RenderedThumbnail
from app.services.render_slots import RenderTicket
from app.services.storage.local import LocalStorage
from app.services.thumbnail_jobs import _render_and_store
from app.utils.worker_threads import run_blocking


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
        await run_blocking(partial(ticket.run, slow_render), abandon_on_cancel=True)
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


def _thumbnail() -> RenderedThumbnail:
    return RenderedThumbnail(data=b"thumb", content_type="image/jpeg", width=1, height=1, checksum="0" * 64)


async def _storage_and_held_slot(root: Path) -> tuple[LocalStorage, threading.BoundedSemaphore, RenderTicket]:
    """Local storage, and one render slot taken for a ticket, as `ThumbnailJobs._render` takes it."""
    storage = LocalStorage(root)
    await storage.startup()
    slots = threading.BoundedSemaphore(1)
    assert slots.acquire(blocking=False)
    return storage, slots, RenderTicket(slots)


async def test_a_render_that_outlived_its_time_limit_stores_nothing(tmp_path: Path) -> None:
    """Its job has moved on (a retry, or the image's deletion): a late file would be recorded by nobody."""
    storage, slots, ticket = await _storage_and_held_slot(tmp_path)
    finish = threading.Event()

    def slow_render() -> RenderedThumbnail:
        finish.wait(10)
        return _thumbnail()

    store = partial(_render_and_store, slow_render, storage, "late", ticket)
    with pytest.raises(TimeoutError), anyio.fail_after(0.1):
        await run_blocking(partial(ticket.run, store), abandon_on_cancel=True)
    ticket.give_up()
    finish.set()
    assert await _slot_frees_within(slots, 5)  # the thread has ended
    assert not (tmp_path / "thumbnails" / "late.jpg").exists()


async def test_a_render_in_time_is_stored_by_its_own_thread(tmp_path: Path) -> None:
    storage, _slots, ticket = await _storage_and_held_slot(tmp_path)
    store = partial(_render_and_store, _thumbnail, storage, "in-time", ticket)
    rendered = await anyio.to_thread.run_sync(ticket.run, store)
    ticket.give_up()
    assert rendered.data == b"thumb"
    assert (tmp_path / "thumbnails" / "in-time.jpg").read_bytes() == b"thumb"
