"""The shared Redis client and the breaker that keeps a dead Redis from slowing requests down.

Redis is an accelerator here (metadata cache, shared rate limits), never a dependency a request
must wait for: every call is bounded by short socket timeouts, and after one failure the breaker
skips Redis for `cooldown_seconds` before letting a single probe through. When the probe succeeds
the service uses Redis again, without a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

RedisState = Literal["connected", "disconnected", "disabled"]
T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 0.25
SOCKET_TIMEOUT_SECONDS = 0.5
DEFAULT_COOLDOWN_SECONDS = 1.0
# Any Redis error counts as an outage, even an answer such as READONLY or OOM: skipping Redis for a
# second costs little, and it keeps a misbehaving server to one log line instead of one per request.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError)


class RedisUnavailable(Exception):
    """Redis is not configured, is being skipped after a failure, or just failed."""


def create_redis(url: str) -> Redis:
    """An asyncio Redis client whose every call fails within about half a second when Redis is gone."""
    # redis-py >= 6 retries connection errors 3 times with up to 10 s backoff by default and has
    # deprecated `retry_on_timeout`; zero retries is what keeps a dead Redis from stalling a request.
    return Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), retries=0),
    )


class RedisBreaker:
    """Remembers a Redis failure and skips Redis until the cool-down lets one probe through."""

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
        """Whether the caller should try Redis now (always, or as the one probe of this cool-down)."""
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
            logger.info("redis: reachable again after %.1f s; using it again", self._clock() - self._down_since)
            self._down_since = None

    def record_failure(self, error: BaseException) -> None:
        """Open the breaker; log the outage once, not once per request."""
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
            logger.warning(
                "redis: unreachable (%s: %s); cache and rate limits fall back, retrying every %.1f s",
                type(error).__name__,
                error,
                self.cooldown_seconds,
            )
        self._next_probe_at = now + self.cooldown_seconds


class RedisHandle:
    """The process's Redis client (or none) with its breaker: one pool, one outage log, one health state."""

    def __init__(self, url: str | None, *, cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS) -> None:
        self.url = url
        self.client: Redis | None = create_redis(url) if url else None
        self.breaker = RedisBreaker(cooldown_seconds)

    @property
    def enabled(self) -> bool:
        """True when a Redis URL is configured."""
        return self.client is not None

    def state(self) -> RedisState:
        """The last known state: `disabled` without a URL, else what the latest call or ping saw."""
        if self.client is None:
            return "disabled"
        return "disconnected" if self.breaker.is_down else "connected"

    async def execute(self, operation: Callable[[Redis], Awaitable[T]]) -> T:
        """Run `operation` on the client unless the breaker says skip; outages raise `RedisUnavailable`."""
        if self.client is None or not self.breaker.allows_call():
            raise RedisUnavailable
        try:
            result = await operation(self.client)
        except OUTAGE_ERRORS as error:
            self.breaker.record_failure(error)
            raise RedisUnavailable from error
        self.breaker.record_success()
        return result

    async def ping(self) -> bool:
        """Health check: PING now, ignoring the cool-down, and record what happened."""
        if self.client is None:
            return False
        try:
            await self.client.ping()
        except OUTAGE_ERRORS as error:
            self.breaker.record_failure(error)
            return False
        self.breaker.record_success()
        return True

    async def close(self) -> None:
        """Close the connection pool (call from the app's lifespan shutdown)."""
        if self.client is not None:
            await self.client.aclose()
