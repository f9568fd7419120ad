"""Cache-aside store of image metadata in Redis.

The database stays the source of truth: a read asks the cache first and, on a miss, loads the row
and calls `set`; every write to an image calls `invalidate`. Redis failing is never an error here:
a read reports MISS (the caller loads from the database), writes are dropped, and the outage is
logged once by the breaker in `redis_client`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, Literal
from uuid import UUID

from redis.asyncio import Redis

from app.services.redis_client import RedisHandle, RedisUnavailable

logger = logging.getLogger(__name__)

CacheStatus = Literal["HIT", "MISS", "DISABLED"]
# Invalidations that failed during an outage are retried once Redis answers; past this many the
# oldest are forgotten (they still expire with their TTL).
MAX_PENDING_INVALIDATIONS = 10_000


class MetadataCache:
    """Image metadata as JSON under `<prefix>image:<id>`, with a TTL; fails open."""

    def __init__(self, redis: RedisHandle, *, key_prefix: str = "chitram:", ttl_seconds: int = 3600) -> None:
        self.redis = redis
        self.key_prefix = key_prefix
        self.ttl_seconds = ttl_seconds
        # Keys whose delete failed while Redis was down: without a retry, an image deleted during
        # an outage could be served from a stale entry for a whole TTL once Redis is back.
        self._pending_invalidations: dict[str, None] = {}

    def key(self, image_id: UUID | str) -> str:
        """The Redis key of one image's metadata, e.g. `chitram:image:<uuid>`."""
        return f"{self.key_prefix}image:{image_id}"

    async def get(self, image_id: UUID | str) -> tuple[dict[str, Any] | None, CacheStatus]:
        """The cached metadata and HIT, or None and MISS (absent, unreadable or Redis down) / DISABLED."""
        if not self.redis.enabled:
            return None, "DISABLED"
        key = self.key(image_id)

        async def read(client: Redis) -> bytes | str | None:
            await self._flush_pending(client)
            return await client.get(key)

        try:
            raw = await self.redis.execute(read)
        except RedisUnavailable:
            return None, "MISS"
        if raw is None:
            return None, "MISS"
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            # Written by something else (or an older layout): drop it so the next set replaces it.
            logger.warning("cache: ignoring unreadable entry %s", key)
            await self.invalidate(image_id)
            return None, "MISS"
        return value, "HIT"

    async def set(self, image_id: UUID | str, value: dict[str, Any]) -> None:
        """Store JSON-compatible metadata (e.g. `model_dump(mode="json")`) with the configured TTL."""
        if not self.redis.enabled:
            return
        # Serialise before touching Redis: a value json cannot encode is a bug and should say so.
        payload = json.dumps(value, separators=(",", ":"))
        key = self.key(image_id)

        async def write(client: Redis) -> None:
            await self._flush_pending(client)
            await client.set(key, payload, ex=self.ttl_seconds)

        with contextlib.suppress(RedisUnavailable):
            await self.redis.execute(write)

    async def invalidate(self, image_id: UUID | str) -> None:
        """Forget one image's metadata (after an update or delete)."""
        if not self.redis.enabled:
            return
        key = self.key(image_id)

        self._pending_invalidations[key] = None
        try:
            await self.redis.execute(self._flush_pending)
        except RedisUnavailable:
            while len(self._pending_invalidations) > MAX_PENDING_INVALIDATIONS:
                del self._pending_invalidations[next(iter(self._pending_invalidations))]

    async def _flush_pending(self, client: Redis) -> None:
        if not self._pending_invalidations:
            return
        keys = list(self._pending_invalidations)
        await client.delete(*keys)
        for key in keys:
            self._pending_invalidations.pop(key, None)
