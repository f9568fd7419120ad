"""Variants on request: found, or rendered once and stored, by any number of processes (ADR 0015).

A variant belongs to a content (the SHA-256 of an original) and has a name made from the request and
the encoder settings, so every image with that content, in every process, asks for the same row of
`variants` and the same stored object. Single flight has two levels:

- in a process, one task per variant does the work and the other requests for it await that task;
- across processes, the `variants` row is the claim: it is inserted under the content's lock
  (`content_store.lock_content`) with a token and a lease, and whoever inserted it renders. The others
  poll the row until it is ready, and take the claim over only if its lease has run out (a renderer
  that died). Nobody renders a variant whose claim is alive.

Renders are bounded per process: `VARIANT_RENDER_CONCURRENCY` at once in worker threads (each holds
its slot until it ends: `render_slots`), `VARIANT_RENDER_QUEUE` waiting, and past that 503 with
Retry-After. A request waits at most `VARIANT_RENDER_TIMEOUT_SECONDS` (then 503 with Retry-After);
the render goes on without it and is stored for the next request, never started over.

Deleting the last image of a content removes its variants (`collect_garbage`); a ready row whose object
is missing (storage restored without `variants/`) is dropped and made again.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
import uuid
from collections import OrderedDict
from datetime import timedelta
from functools import partial
from typing import Any

import anyio
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.database import execute_alone, transaction
from app.errors import ImageNotFound, ServiceUnavailable, StorageUnavailable, VariantUnavailable
from app.media.variants import RenderedVariant, VariantError, VariantRecipe, render_variant
from app.models import Image, Variant, VariantStatus
from app.models.base import utc_now
from app.observability.stages import stage
from app.services.content_store import lock_content
from app.services.delivery import StoredFile
from app.services.render_slots import RenderTicket
from app.services.storage import StorageBackend, StoredObjectMissing
from app.services.variant_naming import ReadyVariant, encoders_of, pregenerated_recipes, variant_key
from app.utils.worker_threads import run_blocking

logger = logging.getLogger(__name__)

# Ready variants remembered per process: about 200 bytes each. A variant never changes under its name,
# but its object goes with its content's last image (in any process), and the content may come back:
# remembered for a minute, as hot files are, so a stale entry cannot outlive that for long.
MEMO_SIZE = 8192
MEMO_TTL_SECONDS = 60.0
# How often the row of a variant another process is rendering is read: soon, then less and less often.
FIRST_POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 0.5


class VariantService:
    """Finds or renders variants for one process; shared by its requests and its thumbnail jobs."""

    def __init__(
        self, *, sessionmaker: async_sessionmaker[AsyncSession], storage: StorageBackend, settings: Settings
    ) -> None:
        self._sessionmaker = sessionmaker
        self._storage = storage
        self._settings = settings
        self.encoders = encoders_of(settings)
        self._memo: OrderedDict[tuple[str, str], tuple[float, ReadyVariant]] = OrderedDict()
        self._flights: dict[tuple[str, str], asyncio.Future[ReadyVariant]] = {}
        self._gate = anyio.Semaphore(settings.variant_render_concurrency, fast_acquire=True)
        self._slots = threading.BoundedSemaphore(settings.variant_render_concurrency)
        self._waiting = 0
        # A claim covers the wait for a slot (up to the time limit) and a render; it is renewed when the
        # render starts. A renderer that dies leaves it to run out.
        self._lease = timedelta(seconds=settings.variant_render_timeout_seconds * 2 + 10)
        # Renders done by this process (tests and benchmarks count them; nothing else reads it).
        self.renders = 0

    async def find(self, metadata: dict[str, Any], recipe: VariantRecipe) -> StoredFile:
        """The stored variant of this image's content, rendered first if nobody has yet."""
        checksum: str = metadata["checksum"]
        name = recipe.name(self.encoders)
        ready = await self._ready(checksum, name, recipe, metadata["storage_key"])
        return ready.as_file(metadata["filename"], recipe)

    def _landed(self, memo_key: tuple[str, str], flight: asyncio.Future[ReadyVariant]) -> None:
        self._flights.pop(memo_key, None)
        if not flight.cancelled():
            flight.exception()  # retrieved here too, in case every waiter has gone

    def remembered(self, checksum: str, recipe: VariantRecipe) -> ReadyVariant | None:
        """The ready variant if this process knows it already (no I/O: the near-cache middleware asks)."""
        return self._recall((checksum, recipe.name(self.encoders)))

    def _recall(self, memo_key: tuple[str, str]) -> ReadyVariant | None:
        entry = self._memo.get(memo_key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._memo[memo_key]
            return None
        self._memo.move_to_end(memo_key)
        return entry[1]

    def forget(self, checksum: str, name: str) -> None:
        """Drop a remembered variant whose object turned out to be missing (its content was deleted)."""
        self._memo.pop((checksum, name), None)

    async def pregenerate(self, checksum: str, source_key: str) -> None:
        """Make the VARIANT_PREGENERATE variants of a content now; failures are logged, not raised."""
        async with self._sessionmaker() as session:
            size = (await session.execute(_SIZE_OF_CONTENT, {"source": checksum})).first()
        if size is None:
            return  # the content's last image went meanwhile
        for recipe in pregenerated_recipes(self._settings, (size.width, size.height)):
            try:
                await self._ready(checksum, recipe.name(self.encoders), recipe, source_key)
            except Exception as error:  # the variant is made on its first request instead
                logger.warning("could not pregenerate %s of %s: %s", recipe, checksum, error)

    async def _ready(self, checksum: str, name: str, recipe: VariantRecipe, source_key: str) -> ReadyVariant:
        memo_key = (checksum, name)
        ready = self._recall(memo_key)
        if ready is not None:
            return ready
        flight = self._flights.get(memo_key)
        if flight is None:
            flight = asyncio.ensure_future(self._obtain(checksum, name, recipe, source_key))
            self._flights[memo_key] = flight
            flight.add_done_callback(partial(self._landed, memo_key))
        # A request waits at most the time limit; the flight goes on without it, so a slow render is
        # finished and stored once, not started again by every retry. Shielded for the same reason: a
        # client that goes away must not cancel the render the others wait for.
        try:
            with anyio.fail_after(self._settings.variant_render_timeout_seconds):
                ready = await asyncio.shield(flight)
        except TimeoutError:
            raise ServiceUnavailable(
                "This variant is still being made; try again in a moment.", headers={"Retry-After": "5"}
            ) from None
        self._memo[memo_key] = (time.monotonic() + MEMO_TTL_SECONDS, ready)
        if len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)
        return ready

    async def _obtain(self, checksum: str, name: str, recipe: VariantRecipe, source_key: str) -> ReadyVariant:
        """Read the row, claim it, render, or wait for the process that renders it.

        Waiting for another process is bounded by a lease: once it runs out, that renderer is taken to
        be dead and the variant is claimed here.
        """
        deadline = time.monotonic() + self._lease.total_seconds()
        poll = FIRST_POLL_SECONDS
        checked = False
        while True:
            outcome, row, token = await self._claim(checksum, name)
            if outcome == "ready":
                ready = _ready_of(row)
                if checked or await self._object_present(ready.key):
                    return ready  # once checked, a storage that says otherwise is told by serving it
                # Restored without `variants/` (operations.md allows it), or lost: made again.
                checked = True
                await self._drop_lost(checksum, name, ready.key)
                continue
            if outcome == "failed":
                raise VariantUnavailable(details={"reason": row.error})
            if outcome == "gone":
                raise ImageNotFound()
            if outcome == "claimed":
                assert token is not None
                made = await self._render(checksum, name, recipe, source_key, token)
                if made is not None:
                    return made
                continue  # another process took the claim over meanwhile: its row tells the rest
            if time.monotonic() >= deadline:
                raise ServiceUnavailable(
                    "This variant is being made; try again in a moment.", headers={"Retry-After": "5"}
                )
            await anyio.sleep(poll)
            poll = min(poll * 2, MAX_POLL_SECONDS)

    async def _object_present(self, key: str) -> bool:
        # Checked once per variant and process (it is remembered afterwards): a cheap HEAD, or stat.
        try:
            return await self._storage.exists(key)
        except Exception:
            return True  # storage trouble is told by serving the file, not by rendering it again

    async def _drop_lost(self, checksum: str, name: str, key: str) -> None:
        """Delete the ready row of a variant whose object is missing, unless it changed meanwhile."""
        logger.warning("variant %s of %s is missing from storage (%s); making it again", name, checksum, key)
        async with transaction(self._sessionmaker) as connection:
            await lock_content(connection, checksum)
            if await self._object_present(key):
                return  # another process made it again meanwhile (the key is the same)
            await connection.execute(
                delete(Variant).where(
                    Variant.source_checksum == checksum,
                    Variant.name == name,
                    Variant.status == VariantStatus.READY,
                    Variant.storage_key == key,
                )
            )

    async def _claim(self, checksum: str, name: str) -> tuple[str, Any, str | None]:
        """ready/failed (with the row), claimed (with our token), busy (another process renders), gone."""
        lookup = select(Variant).where(Variant.source_checksum == checksum, Variant.name == name)
        async with self._sessionmaker() as session:
            row = (await session.scalars(lookup)).first()
        if row is not None and row.status in (VariantStatus.READY, VariantStatus.FAILED):
            return str(row.status), row, None
        now = utc_now()
        if row is not None and row.lease_until is not None and row.lease_until > now:
            return "busy", row, None
        token = uuid.uuid4().hex
        async with transaction(self._sessionmaker) as connection:
            # Under the content's lock, and only while an image has this content: a claim never
            # outlives the content's garbage collection (which deletes every row of the content).
            await lock_content(connection, checksum)
            if (await connection.execute(_ANY_IMAGE, {"source": checksum})).first() is None:
                return "gone", None, None
            current = (await connection.execute(_ROW_STATE, {"source": checksum, "variant": name})).first()
            lease_until = now + self._lease
            if current is None:
                await connection.execute(
                    insert(Variant).values(
                        source_checksum=checksum,
                        name=name,
                        status=VariantStatus.RENDERING,
                        claim_token=token,
                        lease_until=lease_until,
                        created_at=now,
                    )
                )
                return "claimed", None, token
            expired = current.lease_until is None or current.lease_until <= now
            if current.status == VariantStatus.RENDERING and expired:
                await connection.execute(
                    update(Variant)
                    .where(Variant.source_checksum == checksum, Variant.name == name)
                    .values(claim_token=token, lease_until=lease_until)
                )
                return "claimed", None, token
        return "busy", None, None  # settled or claimed meanwhile: the next read tells which

    async def _render(
        self, checksum: str, name: str, recipe: VariantRecipe, source_key: str, token: str
    ) -> ReadyVariant | None:
        """Render under our claim, store, and mark the row ready; on any failure the claim is released.

        None if the claim was lost meanwhile: the content went (the next read says `gone`), or our lease
        ran out and another process took over (the next read says `busy` or `ready`).
        """
        try:
            rendered = await self._render_bounded(checksum, name, recipe, source_key, token)
        except VariantError as error:
            reason = str(error)[:255]
            logger.info("variant %s of %s cannot be made: %s", name, checksum, reason)
            await execute_alone(
                self._sessionmaker,
                _SETTLE.values(status=VariantStatus.FAILED, error=reason, lease_until=None),
                {"source": checksum, "variant": name, "token": token},
            )
            raise VariantUnavailable(details={"reason": reason}) from None
        except BaseException:
            await self._release(checksum, name, token)
            raise
        key = variant_key(checksum, name, rendered.extension)
        now = utc_now()
        updated, _ = await execute_alone(
            self._sessionmaker,
            _SETTLE.values(
                status=VariantStatus.READY,
                storage_key=key,
                content_type=rendered.content_type,
                size=len(rendered.data),
                checksum=rendered.checksum,
                width=rendered.width,
                height=rendered.height,
                lease_until=None,
                created_at=now,
            ),
            {"source": checksum, "variant": name, "token": token},
        )
        if updated == 0:
            # The content's last image went while we rendered (its variants went with it), or our lease
            # ran out and another process took over: the object is ours to remove unless a row names it.
            await collect_variant_object(self._sessionmaker, self._storage, checksum, name, key)
            return None
        return ReadyVariant(key, len(rendered.data), rendered.checksum, rendered.content_type, now)

    async def _render_bounded(
        self, checksum: str, name: str, recipe: VariantRecipe, source_key: str, token: str
    ) -> RenderedVariant:
        if self._gate.value == 0 and self._waiting >= self._settings.variant_render_queue:
            raise ServiceUnavailable(
                "Too many images are being rendered; try again shortly.", headers={"Retry-After": "2"}
            )
        self._waiting += 1
        try:
            with anyio.move_on_after(self._settings.variant_render_timeout_seconds) as waited:
                await self._gate.acquire()
        finally:
            self._waiting -= 1
        if waited.cancelled_caught:
            raise ServiceUnavailable("Renders are queued up; try again shortly.", headers={"Retry-After": "2"})
        try:
            if not self._slots.acquire(blocking=False):
                # Every slot is held by renders that ran out of time and are still finishing.
                raise ServiceUnavailable("Renders are running late; try again shortly.", headers={"Retry-After": "2"})
            ticket = RenderTicket(self._slots)
            try:
                renewed = {"source": checksum, "variant": name, "token": token, "until": utc_now() + self._lease}
                await execute_alone(self._sessionmaker, _RENEW, renewed)
                try:
                    source = await self._storage.read_all(source_key)
                except StoredObjectMissing:
                    raise ImageNotFound() from None
                except Exception as error:
                    raise StorageUnavailable() from error
                key_of = partial(variant_key, checksum, name)
                work = partial(_render_and_store, source, recipe, self, key_of, ticket)
                started = time.perf_counter()
                # No time limit here: the requests have theirs (`_ready`), and a render is bounded by the
                # upload limits. Finished late, it is still stored and served to the next request.
                rendered = await run_blocking(partial(ticket.run, work), abandon_on_cancel=True)
                self.renders += 1
                logger.info(
                    "rendered variant %s of %s (%s, %d bytes) in %.0f ms",
                    name,
                    checksum,
                    rendered.content_type,
                    len(rendered.data),
                    (time.perf_counter() - started) * 1000,
                )
                return rendered
            finally:
                ticket.give_up()
        finally:
            self._gate.release()

    def render_blocking(self, source: bytes, recipe: VariantRecipe) -> RenderedVariant:
        return render_variant(
            source, recipe, self.encoders, max_animation_pixels=self._settings.variant_max_animation_pixels
        )

    def store_blocking(self, key: str, rendered: RenderedVariant) -> None:
        try:
            self._storage.save_blocking(key, io.BytesIO(rendered.data), len(rendered.data), rendered.content_type)
        except Exception as error:
            raise StorageUnavailable() from error

    async def _release(self, checksum: str, name: str, token: str) -> None:
        """Give a claim back (a transient failure): the next request renders again."""
        try:
            await execute_alone(self._sessionmaker, _RELEASE, {"source": checksum, "variant": name, "token": token})
        except Exception:
            logger.exception("could not release the claim on variant %s of %s; its lease will run out", name, checksum)


def _render_and_store(
    source: bytes,
    recipe: VariantRecipe,
    service: VariantService,
    key_of: Any,
    ticket: RenderTicket,
) -> RenderedVariant:
    """Render, then store (a worker thread's whole job; the time limit covers both)."""
    with stage("variant", width=recipe.width or 0, mode=recipe.mode):
        rendered = service.render_blocking(source, recipe)
    if ticket.given_up:
        raise TimeoutError("the request stopped waiting for this render")
    with stage("store"):
        service.store_blocking(key_of(rendered.extension), rendered)
    return rendered


async def collect_variant_object(
    sessionmaker: async_sessionmaker[AsyncSession], storage: StorageBackend, checksum: str, name: str, key: str
) -> None:
    """Delete a variant's object unless a row of that variant exists (claimed again, or ready)."""
    async with transaction(sessionmaker) as connection:
        await lock_content(connection, checksum)
        if (await connection.execute(_ROW_STATE, {"source": checksum, "variant": name})).first() is None:
            await storage.delete(key)


def _ready_of(row: Variant) -> ReadyVariant:
    # A ready row has all of these (set together by _SETTLE).
    assert row.storage_key is not None
    assert row.size is not None
    assert row.checksum is not None
    assert row.content_type is not None
    return ReadyVariant(row.storage_key, row.size, row.checksum, row.content_type, row.created_at)


# The statements of every cold variant, built once.
_ANY_IMAGE = select(Image.id).where(Image.checksum == bindparam("source")).limit(1)
_SIZE_OF_CONTENT = select(Image.width, Image.height).where(Image.checksum == bindparam("source")).limit(1)
_ROW_STATE = select(Variant.status, Variant.lease_until).where(
    Variant.source_checksum == bindparam("source"), Variant.name == bindparam("variant")
)
_MINE = (
    Variant.source_checksum == bindparam("source"),
    Variant.name == bindparam("variant"),
    Variant.claim_token == bindparam("token"),
    Variant.status == VariantStatus.RENDERING,
)
# Settles our claim (values added per outcome); no row once the content went or another process took over.
_SETTLE = update(Variant).where(*_MINE)
_RENEW = update(Variant).where(*_MINE).values(lease_until=bindparam("until"))
_RELEASE = delete(Variant).where(*_MINE)
