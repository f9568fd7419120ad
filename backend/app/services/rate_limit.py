"""Sliding-window rate limits, shared by every process through Redis (the `limits` library).

The strategy is `limits`' moving window: each hit is a timestamp, and a hit is allowed while fewer
than `limit` hits lie in the last `window_seconds`. Unlike a fixed window, a burst at the end of one
minute and another at the start of the next cannot both pass.

Where the counts live:
- no Redis URL: in this process's memory (`redis` is not needed for a single-process deployment);
- Redis configured and answering: in Redis, so all processes share one count per client;
- Redis configured but unreachable: we fail **open** to an in-process moving window. Refusing every
  request because the limiter's store is down would turn a cache outage into a full outage, while
  per-process limits still stop a single client from hammering one process. Counts made during the
  outage are not carried over: once Redis answers again (see `RedisBreaker`), Redis counts rule.

On a Redis Cluster the counts live in `limits`' cluster storage: each (scope, client) window is one
key, read and written by one Lua script on the master of its slot, so no script spans two slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

from limits import RateLimitItem, RateLimitItemPerSecond, WindowStats
from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import RedisCluster

from app.config import REDIS_CLUSTER_SCHEMES
from app.services.redis_client import RedisClient, RedisHandle, RedisUnavailable

LimiterState = Literal["redis", "memory", "memory-fallback"]
DEFAULT_WINDOW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    """The outcome of one hit, in the units of the `RateLimit-*` and `Retry-After` headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after_seconds: int

    def headers(self) -> dict[str, str]:
        """`RateLimit-Limit/-Remaining/-Reset`, plus `Retry-After` when the hit was refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


def limits_storage_uri(redis_url: str) -> str:
    """The `limits` async URI for a redis-py URL (`redis://` → `async+redis://`, `unix://` → `async+redis+unix://`,
    `redis+cluster://` and `rediss+cluster://` → `async+redis+cluster://`, which `limits` spells without TLS)."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    if redis_url.startswith(REDIS_CLUSTER_SCHEMES):
        return "async+redis+cluster://" + redis_url.split("://", 1)[1]
    return "async+" + redis_url


def cluster_storage(client: RedisCluster, redis_url: str, key_prefix: str) -> RedisClusterStorage:
    """`limits`' cluster storage running its scripts on our cluster client.

    `limits` builds a cluster client of its own from the URI and takes none (unlike `connection_pool`
    for one server). Its client connects on first use only, so handing it ours before then costs
    nothing and gives the limiter the same short timeouts, no retries, one view of the topology
    (refreshed by whichever call meets a failover first) and nothing more to close.
    """
    storage = RedisClusterStorage(limits_storage_uri(redis_url), implementation="redispy", key_prefix=key_prefix)
    bridge = storage.bridge
    if not isinstance(bridge, RedispyBridge):
        raise TypeError(f"limits chose {type(bridge).__name__} for redis-py")
    bridge.storage = client
    bridge.register_scripts()  # a script remembers the client it was registered on
    return storage


class RateLimiter:
    """Moving-window limits per (scope, key) in Redis, or in memory without Redis or while it is down."""

    def __init__(
        self,
        redis: RedisHandle | str | None,
        *,
        key_prefix: str = "chitram:ratelimit",
        cooldown_seconds: float | None = None,
    ) -> None:
        # A shared handle means one pool and one outage log for cache and limits; a URL builds our own.
        self._owns_redis = not isinstance(redis, RedisHandle)
        if isinstance(redis, RedisHandle):
            self.redis = redis
        elif cooldown_seconds is None:
            self.redis = RedisHandle(redis)
        else:
            self.redis = RedisHandle(redis, cooldown_seconds=cooldown_seconds)
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        client, url = self.redis.client, self.redis.url
        if client is not None and url is not None:
            storage: RedisStorage
            if isinstance(client, RedisCluster):
                storage = cluster_storage(client, url, key_prefix)
            else:
                # Reuse our client's pool, so the limiter gets the same short timeouts and zero retries.
                pool_options: dict[str, Any] = {"connection_pool": client.connection_pool}
                storage = RedisStorage(
                    limits_storage_uri(url), implementation="redispy", key_prefix=key_prefix, **pool_options
                )
            self._shared = MovingWindowRateLimiter(storage)

    def state(self) -> LimiterState:
        """Where counts live now: `redis`, `memory` (no Redis configured) or `memory-fallback`."""
        if self._shared is None:
            return "memory"
        return "memory-fallback" if self.redis.breaker.is_down else "redis"

    async def admit(
        self, scope: str, key: str, limit_per_minute: int, *, window_seconds: int = DEFAULT_WINDOW_SECONDS
    ) -> Admission:
        """Count one request by `key` (e.g. a client IP) in `scope` (e.g. "upload") and say if it may pass.

        The window's figures for the headers come in a second Redis round trip, which is started here
        and not awaited: only a refusal needs them at once, an admitted request when it answers.
        """
        item = RateLimitItemPerSecond(limit_per_minute, window_seconds, namespace=scope)
        if self._shared is not None:
            shared = self._shared

            async def hit_shared(_client: RedisClient) -> bool:
                return await shared.hit(item, key)

            try:
                allowed = await self.redis.execute(hit_shared)
            except RedisUnavailable:
                pass
            else:
                stats = asyncio.get_running_loop().create_task(self._shared_stats(shared, item, key))
                return Admission(allowed, item.amount, stats)
        # In memory both steps are immediate: nothing to gain from waiting for the figures later.
        allowed = await self._memory.hit(item, key)
        known: asyncio.Future[WindowStats] = asyncio.get_running_loop().create_future()
        known.set_result(await self._memory.get_window_stats(item, key))
        return Admission(allowed, item.amount, known)

    async def hit(
        self, scope: str, key: str, limit_per_minute: int, *, window_seconds: int = DEFAULT_WINDOW_SECONDS
    ) -> RateLimitResult:
        """`admit`, waiting for the window's figures."""
        admission = await self.admit(scope, key, limit_per_minute, window_seconds=window_seconds)
        return await admission.result()

    async def _shared_stats(self, shared: MovingWindowRateLimiter, item: RateLimitItem, key: str) -> WindowStats:
        async def stats_shared(_client: RedisClient) -> WindowStats:
            return await shared.get_window_stats(item, key)

        try:
            return await self.redis.execute(stats_shared)
        except RedisUnavailable:
            # Redis went away between the two calls: the hit was counted there, and the figures
            # fall back to this process's window, as every hit does during an outage.
            return await self._memory.get_window_stats(item, key)

    async def reset(self) -> None:
        """Forget every count (tests): this process's memory and, when reachable, our keys in Redis."""
        await self._memory.storage.reset()
        if self._shared is not None:
            shared_storage = self._shared.storage

            async def reset_shared(_client: RedisClient) -> None:
                await shared_storage.reset()

            with contextlib.suppress(RedisUnavailable):
                await self.redis.execute(reset_shared)

    async def close(self) -> None:
        """Close the Redis pool if this limiter built it from a URL (a shared handle is closed by its owner)."""
        if self._owns_redis:
            await self.redis.close()


class Admission:
    """A counted hit: whether it may pass now, and the window's figures for its headers when they arrive."""

    def __init__(self, allowed: bool, limit: int, stats: asyncio.Future[WindowStats]) -> None:
        self.allowed = allowed
        self._limit = limit
        self._stats = stats

    async def result(self) -> RateLimitResult:
        """The hit's outcome in the units of the headers (waits for the window's figures)."""
        stats = await self._stats
        # `reset_time` is when the oldest counted hit leaves the window, i.e. the next slot frees up.
        reset_seconds = max(0, math.ceil(stats.reset_time - time.time()))
        return RateLimitResult(
            allowed=self.allowed,
            limit=self._limit,
            # A refusal has nothing left, whatever a fallback window (Redis lost meanwhile) counted.
            remaining=max(0, stats.remaining) if self.allowed else 0,
            reset_seconds=reset_seconds,
            retry_after_seconds=0 if self.allowed else max(1, reset_seconds),
        )

    def discard(self) -> None:
        """Drop the figures if nobody will read them (the request ended before it answered)."""
        if not self._stats.done():
            self._stats.cancel()
        elif not self._stats.cancelled():
            self._stats.exception()  # read, so a failure is not logged as "never retrieved"
