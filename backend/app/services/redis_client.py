"""The shared Redis client and the breaker that keeps a dead Redis from slowing requests down.

Redis is an accelerator here (metadata cache, shared rate limits), never a dependency a request
must wait for: every call is bounded by short socket timeouts, and after one failure the breaker
skips Redis for `cooldown_seconds` before letting a single probe through. When the probe succeeds
the service uses Redis again, without a restart.

REDIS_URL may name one server (`redis://`, `rediss://`, `unix://`) or a Redis Cluster by seed nodes
(`redis+cluster://host:port[,host:port…]`, `rediss+cluster://`): then the client is redis-py's
cluster client, with the same timeouts and no retries, and one breaker for the whole cluster. A dead
master fails the calls that reach it as a dead server does; the client learns the new topology from
the first call after the failure, so once a replica has taken over the cache is used again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeAlias, TypeVar
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from app.config import REDIS_CLUSTER_SCHEMES
from app.services.breaker import DEFAULT_COOLDOWN_SECONDS, Breaker

logger = logging.getLogger(__name__)

RedisState = Literal["connected", "disconnected", "disabled"]
# One server or a cluster. Single-key commands and PUBLISH read the same on both; what spans keys
# (several keys in one command, a pipeline) is split by slot on a cluster, so it is written for each.
RedisClient: TypeAlias = Redis | RedisCluster
T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 0.25
SOCKET_TIMEOUT_SECONDS = 0.5
DEFAULT_REDIS_PORT = 6379
# Per cluster node. The cluster client refuses a call past it (an outage for the breaker) where a
# single-server pool would open one more connection; requests of one process stay far below it.
CLUSTER_MAX_CONNECTIONS_PER_NODE = 1000
# Any Redis error counts as an outage, even an answer such as READONLY or OOM: skipping Redis for a
# second costs little, and it keeps a misbehaving server to one log line instead of one per request.
# The cluster client's own errors (no reachable seed node, a slot no node serves) are no RedisError.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)


class RedisUnavailable(Exception):
    """Redis is not configured, is being skipped after a failure, or just failed."""


def create_redis(url: str) -> RedisClient:
    """An asyncio Redis (or Redis Cluster) client whose every call fails within about half a second if Redis is gone."""
    # redis-py >= 6 retries connection errors 3 times with up to 10 s backoff by default and has
    # deprecated `retry_on_timeout`; zero retries is what keeps a dead Redis from stalling a request.
    # The cluster client would retry 3 times too, re-reading the topology (and sleeping 0.25 s after
    # CLUSTERDOWN) in between: a call during a failover would then take seconds instead of failing.
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "retry": Retry(NoBackoff(), retries=0),
    }
    if url.startswith(REDIS_CLUSTER_SCHEMES):
        first_url, other_seeds = split_cluster_url(url)
        startup_nodes = [ClusterNode(host, port) for host, port in other_seeds]
        return RedisCluster.from_url(
            first_url, startup_nodes=startup_nodes, max_connections=CLUSTER_MAX_CONNECTIONS_PER_NODE, **options
        )
    return Redis.from_url(url, **options)


def split_cluster_url(url: str) -> tuple[str, list[tuple[str, int]]]:
    """`redis+cluster://[user:pass@]h1:p1,h2:p2[/?options]` as a redis-py URL of the first seed node
    (`redis://[user:pass@]h1:p1[/?options]`, which carries the credentials, TLS and options for every
    node) and the other seed nodes' (host, port)."""
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    seeds = [_host_and_port(item) for item in hosts.split(",") if item.strip()]
    if not seeds:
        raise ValueError("a Redis Cluster URL names at least one seed node (host:port)")
    scheme = parts.scheme.removesuffix("+cluster")
    host, port = seeds[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    netloc = f"{credentials}@{address}" if credentials else address
    return urlunsplit((scheme, netloc, parts.path, parts.query, "")), seeds[1:]


def _host_and_port(item: str) -> tuple[str, int]:
    """`host[:port]` or `[ipv6][:port]`; the port defaults to 6379."""
    item = item.strip()
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        return host, int(rest.removeprefix(":") or DEFAULT_REDIS_PORT)
    host, _, port = item.partition(":")
    return host, int(port or DEFAULT_REDIS_PORT)


class RedisBreaker(Breaker):
    """Skips Redis for a cool-down after a failure (the cache and the limits fall back meanwhile)."""

    log = logger
    went_down = "redis: unreachable (%s: %s); cache and rate limits fall back, retrying every %.1f s"
    came_back = "redis: reachable again after %.1f s; using it again"


class RedisHandle:
    """The process's Redis client (or none) with its breaker: one pool, one outage log, one health state."""

    def __init__(self, url: str | None, *, cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS) -> None:
        self.url = url
        self.client: RedisClient | None = create_redis(url) if url else None
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

    async def execute(self, operation: Callable[[RedisClient], Awaitable[T]]) -> T:
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
        """Health check: PING now, ignoring the cool-down, and record what happened.

        On a cluster every master is pinged (at once): a cluster with a dead master cannot serve that
        master's keys, and a ping of one node would call it healthy.
        """
        if self.client is None:
            return False
        try:
            if isinstance(self.client, RedisCluster):
                await self.client.ping(target_nodes=RedisCluster.PRIMARIES)
            else:
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
