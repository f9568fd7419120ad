"""A small in-process copy of hot metadata in front of Redis, trusted only while invalidations are heard.

Reading Redis costs a network round trip per request, which on a small machine caps cached
metadata at a fraction of what the framework can serve (docs/performance.md). Metadata changes
rarely (a thumbnail becoming ready, a delete), so each process keeps what it read from Redis for a
few seconds and drops it when any process announces a change on a Redis channel (ADR 0011).

Two rules keep a stale copy from outliving a change by more than the delivery of one message:
- entries are served only while the subscription is known to be alive (`live`); losing it clears
  everything, since announcements sent meanwhile are lost;
- a value read from Redis is kept only if no invalidation arrived while it was being read
  (`generation`), so a read racing a delete cannot store what the delete just removed.

On a Redis Cluster the channel is a classic one, not a sharded one: every node relays each PUBLISH to
every other node over the cluster bus, so a subscription through any node, master or replica, hears
every announcement. Each process picks a node at random (spreading the subscriptions), and when that
node dies it subscribes through another after the usual pause. A sharded channel (SSUBSCRIBE) lives
on the master of its slot and that master's replicas alone: the failure of that one master would
silence every process's copy until the failover, to save a relay that announcements (one per change)
are too few to make costly.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from redis.asyncio import RedisCluster
from redis.asyncio.client import PubSub

from app.services.redis_client import OUTAGE_ERRORS, RedisClient

if TYPE_CHECKING:
    from app.services.cache import Metadata

logger = logging.getLogger(__name__)

# Announcements are tiny; the subscription is pinged this often, and declared dead (everything
# cleared, then resubscribed) when nothing at all was heard for DEAD_AFTER_SECONDS.
PING_INTERVAL_SECONDS = 0.5
DEAD_AFTER_SECONDS = 1.5
RESUBSCRIBE_DELAY_SECONDS = 1.0


class NearCache:
    """An LRU of image metadata by id, with a short TTL, valid while `live`."""

    def __init__(
        self, *, ttl_seconds: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Metadata]] = OrderedDict()
        # Bumped by every invalidation: a read that started under another generation may be stale.
        self.generation = 0
        self.live = False

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0

    def get(self, image_id: str) -> Metadata | None:
        if not self.live:
            return None
        entry = self._entries.get(image_id)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[image_id]
            return None
        return value

    def put(self, image_id: str, value: Metadata, read_in_generation: int) -> None:
        """Keep `value`, read from Redis while `generation` was `read_in_generation`."""
        if not (self.live and self.enabled) or read_in_generation != self.generation:
            return
        self._entries[image_id] = (self._clock() + self.ttl_seconds, value)
        self._entries.move_to_end(image_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, image_id: str) -> None:
        self.generation += 1
        self._entries.pop(image_id, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def set_live(self, live: bool) -> None:
        """Start or stop trusting the copy; either way what was held may have missed an announcement."""
        self.clear()
        self.live = live


class InvalidationListener:
    """Subscribes to the invalidation channel and applies each announcement to a `NearCache`."""

    def __init__(self, client: RedisClient, channel: str, near: NearCache) -> None:
        self.client = client
        self.channel = channel
        self.near = near
        self._clock = time.monotonic
        self._failing = False
        self._stopping = False
        # Cluster nodes whose subscription failed since the last one that worked: tried last.
        self._failed_nodes: set[str] = set()
        self._node_name: str | None = None

    def stop(self) -> None:
        """Make `run` return within one poll interval.

        Cancelling alone is not enough on Python 3.11: a cancellation that lands as redis-py's read
        time-out fires can be taken for the time-out and swallowed, and the loop would go on.
        """
        self._stopping = True

    async def run(self) -> None:
        """Listen until stopped or cancelled; resubscribe after any failure (the copy is unused meanwhile)."""
        while not self._stopping:
            try:
                await self._listen()
            except OUTAGE_ERRORS as error:
                if not self._failing:
                    logger.warning("near cache: invalidation channel lost (%s); unused until resubscribed", error)
                self._failing = True
                if self._node_name is not None:
                    self._failed_nodes.add(self._node_name)
            finally:
                self.near.set_live(False)
            if not self._stopping:
                await asyncio.sleep(RESUBSCRIBE_DELAY_SECONDS)

    async def _listen(self) -> None:
        pubsub = await self._pubsub()
        try:
            await pubsub.subscribe(self.channel)
            last_heard = last_ping = self._clock()
            while not self._stopping:
                message = await pubsub.get_message(timeout=PING_INTERVAL_SECONDS)
                now = self._clock()
                if message is not None:
                    last_heard = now
                    kind = message["type"]
                    if kind == "subscribe":
                        self.near.set_live(True)
                        self._failed_nodes.clear()
                        if self._failing:
                            logger.info("near cache: subscribed to %s again", self.channel)
                            self._failing = False
                    elif kind == "message":
                        data = message["data"]
                        self.near.forget(data.decode() if isinstance(data, bytes) else str(data))
                if now - last_heard > DEAD_AFTER_SECONDS:
                    raise ConnectionError(f"no answer on {self.channel} for {now - last_heard:.1f} s")
                if now - last_ping >= PING_INTERVAL_SECONDS:
                    await pubsub.ping()
                    last_ping = now
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped

    async def _pubsub(self) -> PubSub:
        """A subscriber connection: to the server, or to one node of a cluster (one that has not just failed)."""
        self._node_name = None
        if not isinstance(self.client, RedisCluster):
            return self.client.pubsub()
        # Reads the topology on first use, and again after a call saw a node fail.
        await self.client.initialize()
        nodes = self.client.get_nodes()
        candidates = [node for node in nodes if node.name not in self._failed_nodes] or nodes
        node = random.choice(candidates)  # spreading the subscriptions, not a secret
        self._node_name = node.name
        return self.client.pubsub(node=node)
