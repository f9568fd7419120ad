"""A circuit breaker for an optional dependency that fails open (Redis, the database replica).

After a failure the dependency is skipped for `cooldown_seconds`; then a single caller probes it, and
its success closes the breaker. Each outage and each recovery is logged once, by the subclass's
logger and words, so a dead dependency costs one fast failure a cool-down and one log line, not a
time-out and a line per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import ClassVar

DEFAULT_COOLDOWN_SECONDS = 1.0


class Breaker:
    """Remembers a failure and skips the dependency until the cool-down lets one probe through."""

    # Set by each subclass: where and how its outages are told. `went_down` takes the error's type,
    # the error and the cool-down; `came_back` the outage's length in seconds.
    log: ClassVar[logging.Logger]
    went_down: ClassVar[str]
    came_back: ClassVar[str]

    def __init__(
        self, cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._down_since: float | None = None
        self._next_probe_at = 0.0

    @property
    def is_down(self) -> bool:
        """True between a failure and the next success."""
        return self._down_since is not None

    def allows_call(self) -> bool:
        """Whether the caller should try the dependency now (always, or as the one probe of this cool-down)."""
        if self._down_since is None:
            return True
        now = self._clock()
        if now < self._next_probe_at:
            return False
        # Only the first caller after the cool-down probes; the others keep skipping until it answers.
        self._next_probe_at = now + self.cooldown_seconds
        return True

    def record_success(self) -> None:
        """Close the breaker; log the recovery once."""
        if self._down_since is not None:
            self.log.info(self.came_back, self._clock() - self._down_since)
            self._down_since = None

    def record_failure(self, error: BaseException) -> None:
        """Open the breaker; log the outage once, not once per call."""
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
            self.log.warning(self.went_down, type(error).__name__, error, self.cooldown_seconds)
        self._next_probe_at = now + self.cooldown_seconds
