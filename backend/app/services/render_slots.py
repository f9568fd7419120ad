"""A render's hold on one of a bounded number of slots, kept by its thread until the thread really ends.

Renders run in worker threads with a time limit; a thread cannot be stopped, so a render that runs
out of time is abandoned, not killed. Counting slots by thread (not by waiter) keeps such runaway
renders bounded: a new render is admitted only when a thread has ended. Thumbnail jobs and variant
renders each have their own slots.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class RenderTicket:
    """One render's hold on a slot, released by whichever side is last to need it.

    The slot is taken before the thread is asked for. If the thread starts, it keeps the slot until
    it ends, even when the waiting side has given up on it (a time-out abandons the thread, it does
    not stop it). If the waiting side gives up first, it frees the slot and the thread, should it
    still start, does nothing.
    """

    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self._slots = slots
        self._lock = threading.Lock()
        self._state = "waiting"  # -> "running" -> "done", or -> "abandoned"
        self._left_running = False

    def run(self, render: Callable[[], T]) -> T:
        with self._lock:
            if self._state == "abandoned":
                raise TimeoutError("the render was given up before it started")
            self._state = "running"
        try:
            return render()
        finally:
            with self._lock:
                self._state = "done"
            self._slots.release()

    @property
    def given_up(self) -> bool:
        """Whether the waiting side stopped waiting (a time-out) while the thread was still running."""
        return self._left_running

    def give_up(self) -> None:
        """Called by the waiting side when it is done with the render, however that went."""
        with self._lock:
            if self._state != "waiting":
                # The thread ran (or runs) and frees the slot itself.
                self._left_running = self._state == "running"
                return
            self._state = "abandoned"
        self._slots.release()
