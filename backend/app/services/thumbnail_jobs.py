"""Thumbnail jobs: bounded, durable across crashes, safe with several processes.

The job's state is in the image row (ADR 0008, 0016). A job is claimed by a conditional UPDATE that
sets a short lease, renewed while the job runs, so exactly one process works on it; a process that
dies leaves a lease that runs out seconds later. `process` is the job, whoever runs it: this
module's in-process runner (JOB_QUEUE=memory, uploads enqueue their id after the commit) or a
pgqueuer worker (JOB_QUEUE=postgres, `app.jobs`). Either way every process that makes thumbnails
sweeps for pending rows whose lease has run out, so a job lost to a crash, a restart or a dropped
message is picked up again without anyone acting.
"""

from __future__ import annotations

import io
import logging
import random
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from sqlalchemy import BindParameter, ColumnElement, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.database import background_session, execute_alone, transaction
from app.media.thumbnail_plan import DecodedFrame
from app.media.thumbnails import (
    RenderedThumbnail,
    ThumbnailError,
    render_decoded,
    render_thumbnail,
    thumbnail_key,
)
from app.models import Image, ThumbnailStatus
from app.models.base import utc_now
from app.observability.jobs import observed_job
from app.observability.stages import stage
from app.observability.tracing import current_traceparent, job_span
from app.services.content_store import collect_garbage, lock_content
from app.services.render_slots import RenderTicket
from app.services.storage import StorageBackend
from app.services.thumbnail_recipe import thumbnail_recipe
from app.services.variants import VariantService
from app.utils.worker_threads import run_blocking

logger = logging.getLogger(__name__)

# The jobs' kind in metrics: the name app.jobs.kinds.THUMBNAIL gives them in the job queue (a test checks).
THUMBNAIL_JOB = "thumbnail"

QUEUE_CAPACITY = 1000  # a full queue drops ids; the sweeper finds them in the database
# Frames decoded by upload validation, waiting for their job (a few hundred KB each). Past this many
# bytes the oldest frames are dropped and their jobs decode the stored original instead.
MAX_DECODED_BYTES = 32 * 1024 * 1024
# Jobs in flight per render slot: a job spends most of its time waiting on the database and the
# disk (claim, save with fsync, finish), so several overlap while renders stay bounded by the slots.
JOBS_PER_RENDER_SLOT = 4
SWEEP_BATCH = 100
SWEEP_POLL_SECONDS = 0.1  # how often a sweep that found a full batch looks whether the queue has emptied
MAX_RETRY_DELAY_SECONDS = 300.0
LEASE_RENEWALS = 3  # per lease: two renewals may fail (a database hiccup) before a live job loses its claim


@dataclass(frozen=True)
class NewUpload:
    """What an upload hands its thumbnail job in this process, to save it work (ADR 0008)."""

    storage_key: str
    checksum: str
    # Frame 0 as validation decoded it, so the job need not read and decode the original.
    decoded: DecodedFrame | None = None
    # The row was inserted already claimed (`lease_for_new_upload`), so the job need not claim it.
    claimed: bool = False
    # The upload request's span (W3C traceparent): the job's span joins the upload's trace.
    traceparent: str | None = None


class ThumbnailJobs:
    """Makes thumbnails in the background for images whose row says `pending`."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        storage: StorageBackend,
        settings: Settings,
        variants: VariantService | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._storage = storage
        self._settings = settings
        # Makes VARIANT_PREGENERATE's variants as part of the job, so they are as durable as the thumbnail.
        self._variants = variants if settings.variant_pregenerate else None
        self._recipe = thumbnail_recipe(settings)  # recorded with each thumbnail (`app.admin regenerate`)
        self._send: MemoryObjectSendStream[uuid.UUID]
        self._receive: MemoryObjectReceiveStream[uuid.UUID]
        self._send, self._receive = anyio.create_memory_object_stream[uuid.UUID](QUEUE_CAPACITY)
        self._handoffs: OrderedDict[uuid.UUID, NewUpload] = OrderedDict()
        self._decoded_bytes = 0
        self._consuming = False
        # Admits renders without blocking a thread; the slots below also count renders that outlived
        # their time limit, which this gate (released by the waiting side) cannot see.
        # fast_acquire: a free slot is taken without a turn of the event loop (ADR 0007).
        self._render_gate = anyio.Semaphore(settings.thumbnail_concurrency, fast_acquire=True)
        # Render slots are held by the render threads themselves (see RenderTicket), so a thread that
        # outlives its time limit keeps its slot until it really ends: runaway renders stay bounded.
        self._render_slots = threading.BoundedSemaphore(settings.thumbnail_concurrency)
        self._lease = timedelta(seconds=settings.job_lease_seconds)
        # Rows whose claim this process holds (claimed at upload and queued here, or being worked on):
        # `keep_leases` renews them, so the lease can be short and a dead process's claims end soon.
        self._held: set[uuid.UUID] = set()

    @property
    def queued(self) -> int:
        """Ids waiting in this process's queue."""
        return self._send.statistics().current_buffer_used

    def lease_for_new_upload(self) -> datetime | None:
        """The lease an upload's row can be inserted with when this process will make its thumbnail.

        A claim written with the row saves the job its own claiming UPDATE. If the process dies, the
        lease runs out and the sweeper takes the job, as after any crash. No claim once the queue is
        half full: an id dropped from a full queue must leave a row the sweeper takes at once, not one
        claimed for minutes by a job that will never run (the other half is room for the uploads in
        flight and a sweep's batch between this call and `enqueue`).
        """
        if not self._consuming or self.queued > QUEUE_CAPACITY // 2:
            return None
        return utc_now() + self._lease

    def enqueue(self, image_id: uuid.UUID, upload: NewUpload | None = None) -> None:
        """Ask for this image's thumbnail soon; never blocks, never fails the caller.

        `upload` is what the upload request knows (a decoded frame, a claim): only a shortcut, as
        the row remains the job's record.
        """
        try:
            self._send.send_nowait(image_id)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            logger.info("thumbnail queue full or closed; the sweeper will pick up %s", image_id)
            return
        if upload is None:
            return
        self._handoffs[image_id] = upload
        if upload.claimed:
            self._held.add(image_id)
        if upload.decoded is not None:
            self._decoded_bytes += upload.decoded.nbytes
            for waiting_id, waiting in self._handoffs.items():
                if self._decoded_bytes <= MAX_DECODED_BYTES:
                    break
                if waiting.decoded is not None:
                    self._decoded_bytes -= waiting.decoded.nbytes
                    self._handoffs[waiting_id] = replace(waiting, decoded=None)

    async def submit(self, image_id: uuid.UUID, upload: NewUpload | None = None) -> None:
        """`enqueue`, as the upload path calls every job queue (app.services.uploads.ThumbnailQueue)."""
        traceparent = current_traceparent()
        if upload is not None and traceparent is not None:
            upload = replace(upload, traceparent=traceparent)
        self.enqueue(image_id, upload)

    async def run(self) -> None:
        """Consume the queue, renew this process's claims and sweep for lost jobs until cancelled."""
        self._consuming = True
        async with anyio.create_task_group() as group:
            for _ in range(self._settings.thumbnail_concurrency * JOBS_PER_RENDER_SLOT):
                group.start_soon(self._consume)
            group.start_soon(self.keep_leases)
            group.start_soon(self._sweep_forever)

    async def keep_leases(self) -> None:
        """Renew the claims this process holds, a few times per lease, until cancelled."""
        interval = self._settings.job_lease_seconds / LEASE_RENEWALS
        while True:
            await anyio.sleep(interval)
            held = list(self._held)
            if not held:
                continue
            try:
                async with background_session(self._sessionmaker) as session:
                    await session.execute(
                        update(Image)
                        .where(Image.id.in_(held), Image.thumbnail_status == ThumbnailStatus.PENDING)
                        .values(thumbnail_lease_until=utc_now() + self._lease)
                    )
            except Exception as error:
                logger.warning("renewing %d thumbnail claims failed (%s)", len(held), type(error).__name__)

    async def _consume(self) -> None:
        async for image_id in self._receive:
            handoff = self._handoffs.get(image_id)
            traceparent = None if handoff is None else handoff.traceparent
            try:
                with job_span("chitram.job.thumbnail", traceparent, subject=str(image_id)), observed_job(THUMBNAIL_JOB):
                    await self.process(image_id)
            except Exception:
                # The row keeps its lease; the sweeper retries once it runs out.
                logger.exception("thumbnail job for %s failed unexpectedly", image_id)

    async def _sweep_forever(self) -> None:
        await self.sweep(self.sweep_once)

    async def sweep(self, sweep_once: Callable[[], Awaitable[int]]) -> None:
        """Run `sweep_once` (which finds lost jobs and hands them to a queue) every sweep interval."""
        while True:
            found = 0
            try:
                found = await sweep_once()
            except Exception as error:
                logger.warning("thumbnail sweep failed (%s); trying again later", type(error).__name__)
            if found < SWEEP_BATCH:
                await anyio.sleep(self._settings.thumbnail_sweep_interval_seconds)
                continue
            # A full batch: more are waiting (a burst overflowed the queue). Sweep again as soon as this
            # batch has been taken (not before, or it would find it again), and at the latest after the
            # usual interval, so a queue that never empties under load still gets its sweeps.
            with anyio.move_on_after(self._settings.thumbnail_sweep_interval_seconds):
                while self.queued > 0:  # noqa: ASYNC110 - the queue has no event for "empty"; polling is cheap
                    await anyio.sleep(SWEEP_POLL_SECONDS)

    async def sweep_once(self) -> int:
        """Enqueue pending images that nobody is working on; returns how many."""
        ids = await self.lost_jobs()
        for image_id in ids:
            self.enqueue(image_id)
        return len(ids)

    async def lost_jobs(self) -> list[uuid.UUID]:
        """Pending images that nobody holds a claim on, oldest first (at most a sweep's batch)."""
        now = utc_now()
        async with background_session(self._sessionmaker) as session:
            return list(
                await session.scalars(
                    select(Image.id)
                    .where(Image.thumbnail_status == ThumbnailStatus.PENDING, _lease_free(now))
                    .order_by(Image.created_at)
                    .limit(SWEEP_BATCH)
                )
            )

    async def process(self, image_id: uuid.UUID) -> None:
        """Claim, render, store and record one image's thumbnail (idempotent).

        Cancelled (a worker's SIGTERM ran out of time), it gives its claim back at once, so the job
        is taken again by the next sweep rather than when the lease runs out.
        """
        upload = self._take_handoff(image_id)
        if upload is not None and upload.claimed:
            claim: tuple[str, int, str] | None = (upload.storage_key, 1, upload.checksum)
        else:
            claim = await self._claim(image_id)
        if claim is None:
            self._held.discard(image_id)
            return  # done, failed, deleted, or another process holds the lease
        self._held.add(image_id)
        try:
            await self._work(image_id, claim, upload)
        except anyio.get_cancelled_exc_class():
            if image_id in self._held:
                with anyio.CancelScope(shield=True):
                    await self._postpone(image_id, delay=0.0)
            raise
        finally:
            self._held.discard(image_id)

    async def _work(self, image_id: uuid.UUID, claim: tuple[str, int, str], upload: NewUpload | None) -> None:
        storage_key, attempts, checksum = claim
        decoded = upload.decoded if upload is not None else None
        if decoded is None and await self._share_ready_thumbnail(image_id, storage_key, checksum):
            return  # another image with the same content has its thumbnail already (ADR 0014)
        if self._variants is not None:
            # Before the thumbnail is recorded: a job lost before that point is run again, variants included.
            await self._variants.pregenerate(checksum, storage_key)
        try:
            rendered = await self._render(image_id, storage_key, decoded)
            if rendered is None:
                return  # postponed
        except ThumbnailError as error:
            await self._finish_failed(image_id, f"cannot make a thumbnail: {error}")
            return
        except Exception as error:
            await self._retry_later(image_id, attempts, error)
            return
        key = thumbnail_key(str(image_id), rendered.content_type)
        # Nothing cached needs dropping: metadata is not cached while its thumbnail is pending, and
        # only a pending row is settled, so a cached ready or failed state stays true.
        if not await self._finish_ready(image_id, key, rendered):
            # The image was deleted while we worked, or a job that took over after our lease ran out
            # settled it: unless a row names the file (that job made it ready, or others share it), it
            # is nobody's.
            await collect_garbage(self._sessionmaker, self._storage, checksum, [key])

    def _take_handoff(self, image_id: uuid.UUID) -> NewUpload | None:
        upload = self._handoffs.pop(image_id, None)
        if upload is not None and upload.decoded is not None:
            self._decoded_bytes -= upload.decoded.nbytes
        return upload

    async def _render(
        self, image_id: uuid.UUID, storage_key: str, decoded: DecodedFrame | None
    ) -> RenderedThumbnail | None:
        """Render and store in a worker thread once a slot is free; None if the job was postponed instead."""
        async with self._render_gate:
            if not self._render_slots.acquire(blocking=False):
                # Every slot is held, by renders that ran out of time and are still finishing.
                await self._postpone(image_id)
                return None
            ticket = RenderTicket(self._render_slots)
            try:
                if decoded is not None:
                    render = partial(render_decoded, decoded)
                else:
                    # Read inside the gate: originals are bounded by the upload limit and concurrent
                    # reads by the slots, so memory is bounded too.
                    source = await self._read_original(storage_key)
                    render = partial(render_thumbnail, source, max_side=self._settings.thumbnail_size)
                # Stored by the same thread: one hop per job, not two (the time limit covers both).
                store = partial(_render_and_store, render, self._storage, str(image_id), ticket)
                with anyio.fail_after(self._settings.thumbnail_timeout_seconds):
                    return await run_blocking(partial(ticket.run, store), abandon_on_cancel=True)
            finally:
                ticket.give_up()

    async def _claim(self, image_id: uuid.UUID) -> tuple[str, int, str] | None:
        now = utc_now()
        _, row = await execute_alone(
            self._sessionmaker, _CLAIM, {"claimed_id": image_id, "now": now, "lease_until": now + self._lease}
        )
        if row is None:
            return None
        return str(row.storage_key), int(row.thumbnail_attempts), str(row.checksum)

    async def _share_ready_thumbnail(self, image_id: uuid.UUID, storage_key: str, checksum: str) -> bool:
        """Take over the ready thumbnail of an image with the same content; whether there was one.

        Under the content's lock, so the thumbnail cannot be collected between reading its key and
        recording it here.
        """
        async with transaction(self._sessionmaker) as connection:
            await lock_content(connection, checksum)
            ready = (
                await connection.execute(_READY_SIBLING, {"sharing_id": image_id, "shared_key": storage_key})
            ).first()
            if ready is None:
                return False
            shared = {
                "finished_id": image_id,
                "new_key": ready.thumbnail_key,
                "new_content_type": ready.thumbnail_content_type,
                "new_size": ready.thumbnail_size,
                "new_checksum": ready.thumbnail_checksum,
                "new_placeholder": ready.placeholder,
                "new_recipe": ready.thumbnail_recipe,
            }
            result = await connection.execute(_FINISH_READY, shared)
            return result.rowcount > 0

    async def _read_original(self, storage_key: str) -> io.BytesIO:
        return io.BytesIO(await self._storage.read_all(storage_key))

    async def _finish_ready(self, image_id: uuid.UUID, key: str, rendered: RenderedThumbnail) -> bool:
        updated, _ = await execute_alone(
            self._sessionmaker,
            _FINISH_READY,
            {
                "finished_id": image_id,
                "new_key": key,
                "new_content_type": rendered.content_type,
                "new_size": len(rendered.data),
                "new_checksum": rendered.checksum,
                "new_placeholder": rendered.placeholder,
                "new_recipe": self._recipe,
            },
        )
        return updated > 0

    async def _finish_failed(self, image_id: uuid.UUID, reason: str) -> None:
        self._held.discard(image_id)
        logger.warning("thumbnail for %s failed for good: %s", image_id, reason)
        async with background_session(self._sessionmaker) as session:
            await session.execute(
                update(Image)
                .where(Image.id == image_id, Image.thumbnail_status == ThumbnailStatus.PENDING)
                .values(
                    thumbnail_status=ThumbnailStatus.FAILED, thumbnail_error=reason[:255], thumbnail_lease_until=None
                )
            )

    async def _retry_later(self, image_id: uuid.UUID, attempts: int, error: Exception) -> None:
        self._held.discard(image_id)  # so that no renewal overwrites the delay
        reason = f"{type(error).__name__}: {error}"[:200]
        if attempts >= self._settings.thumbnail_max_attempts:
            await self._finish_failed(image_id, f"gave up after {attempts} attempts: {reason}")
            return
        delay = retry_delay(self._settings.thumbnail_retry_base_seconds, attempts)
        logger.info("thumbnail for %s failed (attempt %d, %s); retrying in %.0f s", image_id, attempts, reason, delay)
        async with background_session(self._sessionmaker) as session:
            await session.execute(
                update(Image)
                .where(Image.id == image_id, Image.thumbnail_status == ThumbnailStatus.PENDING)
                .values(thumbnail_lease_until=utc_now() + timedelta(seconds=delay), thumbnail_error=reason)
            )

    async def _postpone(self, image_id: uuid.UUID, delay: float | None = None) -> None:
        """Hand the claim back for a later try without spending one of the image's attempts."""
        self._held.discard(image_id)
        wait = self._settings.thumbnail_retry_base_seconds if delay is None else delay
        async with background_session(self._sessionmaker) as session:
            await session.execute(
                update(Image)
                .where(Image.id == image_id, Image.thumbnail_status == ThumbnailStatus.PENDING)
                .values(
                    thumbnail_lease_until=utc_now() + timedelta(seconds=wait),
                    thumbnail_attempts=Image.thumbnail_attempts - 1,
                )
            )

    async def close(self) -> None:
        """Close the queue (after `run` has ended): both ends, so neither is left for the garbage collector."""
        await self._send.aclose()
        await self._receive.aclose()


def retry_delay(base_seconds: float, attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling from `base_seconds`, capped,
    with "equal jitter" (a random half of it), so jobs that failed together do not retry together.
    """
    delay = min(base_seconds * float(2 ** (attempts - 1)), MAX_RETRY_DELAY_SECONDS)
    return delay / 2 + random.uniform(0, delay / 2)  # spreading retries, not a secret: any PRNG does


def _render_and_store(
    render: Callable[[], RenderedThumbnail], storage: StorageBackend, image_id: str, ticket: RenderTicket
) -> RenderedThumbnail:
    """Render, then save the thumbnail under its key (blocking: a worker thread's whole job).

    A render that outlived its time limit stores nothing: its job has moved on (a retry, or the
    image's deletion), and a late write could leave a file nobody records.
    """
    with stage("thumbnail"):
        rendered = render()
    if ticket.given_up:
        raise TimeoutError("the job stopped waiting for this render")
    key = thumbnail_key(image_id, rendered.content_type)
    with stage("store"):
        storage.save_blocking(key, io.BytesIO(rendered.data), len(rendered.data), rendered.content_type)
    return rendered


def _lease_free(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    return or_(Image.thumbnail_lease_until.is_(None), Image.thumbnail_lease_until < now)


# The two statements every job runs, built once (building one costs about as much as running it).
_CLAIM = (
    update(Image)
    .where(
        Image.id == bindparam("claimed_id"),
        Image.thumbnail_status == ThumbnailStatus.PENDING,
        _lease_free(bindparam("now", type_=Image.thumbnail_lease_until.type)),
    )
    .values(thumbnail_lease_until=bindparam("lease_until"), thumbnail_attempts=Image.thumbnail_attempts + 1)
    .returning(Image.storage_key, Image.thumbnail_attempts, Image.checksum)
)
# Only a pending row is settled: a job whose lease ran out while it worked must not overwrite what the
# job that took over decided, which readers may already have cached (ADR 0006).
_FINISH_READY = (
    update(Image)
    .where(Image.id == bindparam("finished_id"), Image.thumbnail_status == ThumbnailStatus.PENDING)
    .values(
        thumbnail_status=ThumbnailStatus.READY,
        thumbnail_key=bindparam("new_key"),
        thumbnail_content_type=bindparam("new_content_type"),
        thumbnail_size=bindparam("new_size"),
        thumbnail_checksum=bindparam("new_checksum"),
        placeholder=bindparam("new_placeholder"),
        thumbnail_recipe=bindparam("new_recipe"),
        thumbnail_error=None,
        thumbnail_lease_until=None,
    )
)
# A ready thumbnail of another image with the same original (a pending image takes it over with
# _FINISH_READY, as if it had rendered it).
_READY_SIBLING = (
    select(
        Image.thumbnail_key,
        Image.thumbnail_content_type,
        Image.thumbnail_size,
        Image.thumbnail_checksum,
        Image.placeholder,
        Image.thumbnail_recipe,
    )
    .where(
        Image.storage_key == bindparam("shared_key"),
        Image.thumbnail_status == ThumbnailStatus.READY,
        Image.id != bindparam("sharing_id"),
    )
    .limit(1)
)
