"""Cache-aside store of image metadata in Redis, with a near copy in each process.

The database stays the source of truth: a read asks the cache first and, on a miss, loads the row
and calls `set`; a delete calls `invalidate`, which also announces the change to every process's
near copy (`near_cache`, ADR 0011). Metadata whose thumbnail is pending is never stored nor
served, so a cached value stays true until the image is deleted. Redis failing is never an error
here: a read reports MISS (the caller loads from the database), writes are dropped, and the outage
is logged once by the breaker in `redis_client`.

A miss must not put back what a delete has just removed: a read that loaded the row before another
process deleted it would otherwise write it into Redis after the delete's invalidation, and it would
be served for a whole TTL. So each image has a fill stamp beside its entry, replaced by a random one
at every invalidation; a miss reads the stamp with the entry, and its fill is written only if the
stamp is still the one it read (one script, `FILL_IF_UNCHANGED`).

On a Redis Cluster each image's entry lies in the slot its key hashes to, so entries spread over the
masters; its stamp's key carries the entry's key as a hash tag, so the two share a slot and the fill
script may touch both.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from redis.asyncio import Redis, RedisCluster

from app.models import ThumbnailStatus
from app.observability.metrics import TALLY
from app.services.near_cache import InvalidationListener, NearCache
from app.services.redis_client import RedisClient, RedisHandle, RedisUnavailable

logger = logging.getLogger(__name__)

CacheStatus = Literal["HIT", "MISS", "DISABLED"]
# Invalidations that failed during an outage are retried once Redis answers; past this many the
# oldest are forgotten (they still expire with their TTL).
MAX_PENDING_INVALIDATIONS = 10_000
# Invalidations sent to Redis in one go (a backlog after an outage goes in several).
FLUSH_BATCH = 200
# How long an invalidation's stamp is kept. A fill is refused when the stamp changed since its miss; a
# stamp that expired reads as none, so it must outlive any read between its miss and its fill (a
# request's seconds), while not keeping a key per deleted image for long.
FILL_STAMP_TTL_SECONDS = 600
# KEYS: the entry, its stamp. ARGV: the stamp the miss read ('' for none), the value, the TTL.
FILL_IF_UNCHANGED = """
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then
    return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


def cacheable(value: dict[str, Any]) -> bool:
    """Whether metadata may be cached: not while its thumbnail is pending, and never a private image's.

    Pending changes within moments, and never storing nor serving it is what lets a thumbnail job
    finish without invalidating anything: every cached value is final until the image is deleted (or
    its visibility changes, which invalidates it). A private image is read by its owner alone: kept
    out of Redis and of every near copy, it can never be answered to anyone else before routing.
    """
    return value.get("thumbnail_status") != ThumbnailStatus.PENDING and value.get("visibility") != "private"


# Fields that serving needs but clients never see: where the original is stored (shared by every
# image with the same content, ADR 0014), and a private image's owner, who alone may see it (ADR 0017;
# never cached). Redis holds the first; the API's body leaves them out.
PRIVATE_FIELDS = frozenset({"storage_key", "owner_id"})


def encode_metadata(value: dict[str, Any]) -> bytes:
    """Metadata as compact UTF-8 JSON, as Redis stores it (private fields included)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def public_body(value: dict[str, Any]) -> bytes:
    """What the API sends for this metadata: everything but the private fields, as compact JSON."""
    return encode_metadata({name: item for name, item in value.items() if name not in PRIVATE_FIELDS})


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the cache said about one image: its metadata on a hit; on a miss that reached Redis, the
    fill stamp to hand back to `fill` (None when Redis was not asked: then nothing may be filled)."""

    metadata: Metadata | None
    status: CacheStatus
    stamp: bytes | None = None


@dataclass(frozen=True, slots=True)
class Metadata:
    """One image's metadata, with its public JSON encoding kept so a hit is never re-serialised."""

    value: dict[str, Any]
    body: bytes

    @classmethod
    def of(cls, value: dict[str, Any]) -> Metadata:
        return cls(value, public_body(value))


class MetadataCache:
    """Image metadata as JSON under `<prefix>image:<id>`, with a TTL; fails open."""

    def __init__(
        self,
        redis: RedisHandle,
        *,
        key_prefix: str = "chitram:",
        ttl_seconds: int = 3600,
        near_ttl_seconds: float = 0,
    ) -> None:
        self.redis = redis
        self.key_prefix = key_prefix
        self.ttl_seconds = ttl_seconds
        self.channel = f"{key_prefix}invalidate"
        # Used only while `listen_for_invalidations` runs and hears the channel.
        self.near = NearCache(ttl_seconds=near_ttl_seconds)
        self._listener: InvalidationListener | None = None
        # Ids whose invalidation failed while Redis was down: without a retry, an image deleted during
        # an outage could be served from a stale entry for a whole TTL once Redis is back.
        self._pending_invalidations: dict[str, None] = {}
        self._fill_script: Any = None

    def key(self, image_id: UUID | str) -> str:
        """The Redis key of one image's metadata, e.g. `chitram:image:<uuid>`."""
        return f"{self.key_prefix}image:{image_id}"

    def stamp_key(self, image_id: UUID | str) -> str:
        """The key of the entry's fill stamp, e.g. `chitram:fill:{chitram:image:<uuid>}` (same cluster slot)."""
        return f"{self.key_prefix}fill:{{{self.key(image_id)}}}"

    async def get(self, image_id: UUID | str) -> tuple[Metadata | None, CacheStatus]:
        """The cached metadata and HIT, or None and MISS (absent, unreadable or Redis down) / DISABLED."""
        found = await self.lookup(image_id)
        return found.metadata, found.status

    async def lookup(self, image_id: UUID | str) -> Lookup:
        """`get`, with the fill stamp a miss must hand to `fill`."""
        if not self.redis.enabled:
            return Lookup(None, "DISABLED")
        near = self.near.get(str(image_id))
        if near is not None:
            TALLY.cache_lookup("near", "hit")
            return Lookup(near, "HIT")
        if self.near.enabled:
            TALLY.cache_lookup("near", "miss")
        generation = self.near.generation
        key, stamp_key = self.key(image_id), self.stamp_key(image_id)

        async def read(client: RedisClient) -> list[bytes | str | None]:
            await self._flush_pending(client)
            # One command: both keys share a slot on a cluster (the stamp's hash tag).
            found: list[bytes | str | None] = await client.mget(key, stamp_key)
            return found

        try:
            raw, stamp = await self.redis.execute(read)
        except RedisUnavailable:
            TALLY.cache_lookup("redis", "error")
            return Lookup(None, "MISS")
        if raw is None:
            TALLY.cache_lookup("redis", "miss")
            return Lookup(None, "MISS", stamp.encode() if isinstance(stamp, str) else stamp or b"")
        TALLY.cache_lookup("redis", "hit")
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict) or "storage_key" not in value:
            # Written by something else (or an older release, before originals were shared by content):
            # drop it so the next set replaces it.
            logger.warning("cache: ignoring unreadable entry %s", key)
            return await self._dropped(key, stamp)
        if not cacheable(value):
            # Only something other than `set` (an older release, a hand edit) can have written it.
            return await self._dropped(key, stamp)
        metadata = Metadata.of(value)
        self.near.put(str(image_id), metadata, generation)
        return Lookup(metadata, "HIT")

    async def set(self, image_id: UUID | str, value: dict[str, Any]) -> None:
        """Store JSON-compatible metadata (e.g. `model_dump(mode="json")`) with the configured TTL, whatever
        happened since it was read: for tests and tools that know. A read after a miss uses `fill`.

        Metadata that is not `cacheable` (its thumbnail is pending) is not stored.
        """
        if not self.redis.enabled or not cacheable(value):
            return
        # Serialise before touching Redis: a value json cannot encode is a bug and should say so.
        payload = encode_metadata(value)
        key = self.key(image_id)

        async def write(client: RedisClient) -> None:
            await self._flush_pending(client)
            await client.set(key, payload, ex=self.ttl_seconds)

        with contextlib.suppress(RedisUnavailable):
            await self.redis.execute(write)

    async def _dropped(self, key: str, stamp: bytes | str | None) -> Lookup:
        """Delete an entry `set` could not have written; the read goes on as a miss that may fill.

        No invalidation: no near copy holds such an entry, and the image itself did not change.
        """

        async def drop(client: RedisClient) -> None:
            await client.delete(key)

        try:
            await self.redis.execute(drop)
        except RedisUnavailable:
            return Lookup(None, "MISS")
        return Lookup(None, "MISS", stamp.encode() if isinstance(stamp, str) else stamp or b"")

    async def fill(self, image_id: UUID | str, value: dict[str, Any], stamp: bytes) -> bool:
        """Store metadata read after a miss, unless the image was invalidated since (its stamp changed).

        Whether it was stored. Not `cacheable` metadata, or Redis failing, stores nothing.
        """
        if not self.redis.enabled or not cacheable(value):
            return False
        payload = encode_metadata(value)
        keys = [self.key(image_id), self.stamp_key(image_id)]
        arguments: list[bytes | str | int] = [stamp, payload, self.ttl_seconds]

        async def write(client: RedisClient) -> bool:
            await self._flush_pending(client)
            if self._fill_script is None:
                # The handle's one client for good: a script object sends EVALSHA (EVAL once if unknown).
                self._fill_script = client.register_script(FILL_IF_UNCHANGED)
            return bool(await self._fill_script(keys=keys, args=arguments))

        try:
            return await self.redis.execute(write)
        except RedisUnavailable:
            return False

    async def invalidate(self, image_id: UUID | str) -> None:
        """Forget one image's metadata (after an update or delete), here and in every process."""
        if not self.redis.enabled:
            return
        self.near.forget(str(image_id))
        self._pending_invalidations[str(image_id)] = None
        try:
            await self.redis.execute(self._flush_pending)
        except RedisUnavailable:
            while len(self._pending_invalidations) > MAX_PENDING_INVALIDATIONS:
                del self._pending_invalidations[next(iter(self._pending_invalidations))]

    @property
    def pending_invalidations(self) -> int:
        """Invalidations not yet delivered to Redis (it failed meanwhile); retried with the next call."""
        return len(self._pending_invalidations)

    async def listen_for_invalidations(self) -> None:
        """Keep the near copy in step with every process's invalidations (a task for the app's lifetime)."""
        if self.redis.client is None or not self.near.enabled:
            return
        self._listener = InvalidationListener(self.redis.client, self.channel, self.near)
        await self._listener.run()

    def stop_listening(self) -> None:
        """Ask `listen_for_invalidations` to return (call before cancelling its task)."""
        if self._listener is not None:
            self._listener.stop()

    async def _flush_pending(self, client: RedisClient) -> None:
        # In batches: after an outage thousands may wait, and on a cluster each announcement takes a
        # connection of its own (the client refuses PUBLISH in a pipeline) from a bounded pool.
        while self._pending_invalidations:
            image_ids = list(itertools.islice(self._pending_invalidations, FLUSH_BATCH))
            # Deleted first, announced second: a process that hears the announcement and reads again
            # must not find the old entry still in Redis.
            if isinstance(client, RedisCluster):
                await self._delete_then_announce_on_cluster(client, image_ids)
            else:
                await self._delete_then_announce(client, image_ids)
            for image_id in image_ids:
                self._pending_invalidations.pop(image_id, None)

    def _new_stamps(self, image_ids: list[str]) -> list[tuple[str, str]]:
        # Text, so a client made with `decode_responses` reads them back as it reads everything else.
        return [(self.stamp_key(image_id), secrets.token_hex(12)) for image_id in image_ids]

    async def _delete_then_announce(self, client: Redis, image_ids: list[str]) -> None:
        # One server runs a pipeline's commands in order: one round trip for every step. The stamps
        # change before the entries go, so a fill that read the old stamp can no longer write.
        async with client.pipeline(transaction=False) as pipe:
            for stamp_key, stamp in self._new_stamps(image_ids):
                pipe.set(stamp_key, stamp, ex=FILL_STAMP_TTL_SECONDS)
            pipe.delete(*(self.key(image_id) for image_id in image_ids))
            for image_id in image_ids:
                pipe.publish(self.channel, image_id)
            await pipe.execute()

    async def _delete_then_announce_on_cluster(self, client: RedisCluster, image_ids: list[str]) -> None:
        # The keys lie in different slots, on different masters: the cluster client sends one DEL per
        # slot, to every master at once. A pipeline holding both steps would be split by node and sent
        # to the nodes side by side, so an announcement could overtake the delete it follows: three trips
        # (the stamps first, as on one server).
        async with client.pipeline() as pipe:  # a cluster pipeline: one batch per master
            for stamp_key, stamp in self._new_stamps(image_ids):
                pipe.set(stamp_key, stamp, ex=FILL_STAMP_TTL_SECONDS)
            await pipe.execute()
        await client.delete(*(self.key(image_id) for image_id in image_ids))
        # PUBLISH is relayed to every node of the cluster, so any node may take it: a random master each
        # time, not the master of the channel's slot (where redis-py sends it), so that while one master
        # is down the retry of a failed announcement goes elsewhere instead of waiting for the failover.
        # (The cluster client refuses PUBLISH in a pipeline.)
        await asyncio.gather(
            *(client.publish(self.channel, image_id, target_nodes=RedisCluster.RANDOM) for image_id in image_ids)
        )
