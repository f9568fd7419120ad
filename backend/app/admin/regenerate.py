"""`python -m app.admin regenerate`: make ready thumbnails again with today's settings, with progress."""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import ColumnElement, and_, func, or_, select, true, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.admin.bulk import WINDOW, bulk_jobs
from app.config import Settings
from app.database import background_session, read_session
from app.jobs import maintenance
from app.jobs.kinds import REGENERATE
from app.jobs.resources import JobResources
from app.models import Image, ThumbnailStatus, User
from app.services.thumbnail_recipe import thumbnail_recipe

COMMAND = "regenerate"
DESCRIPTION = """Make ready thumbnails again with today's settings (THUMBNAIL_SIZE, and the variants
VARIANT_PREGENERATE lists with today's VARIANT_* encoders): those whose recorded recipe differs from
today's, so a run that was interrupted (Ctrl-C), run again, only does the rest. --force first forgets the
recipe of the selection, then does the same (to go on after an interrupted --force run, leave --force out).
Runs as low-priority jobs: on the worker tier with JOB_QUEUE=postgres (restart the workers with the new
settings first: the jobs use theirs), else in this process. Pending thumbnails are made by the usual jobs;
failed ones are for `jobs retry`."""


@dataclass(frozen=True)
class Selection:
    """Which images: all, some by id, one account's (by email), or those uploaded since a day (UTC)."""

    image_ids: tuple[uuid.UUID, ...] = ()
    user_email: str | None = None
    since: date | None = None

    def condition(self) -> ColumnElement[bool]:
        if self.image_ids:
            return Image.id.in_(self.image_ids)
        if self.user_email is not None:
            owner = select(User.id).where(User.email == self.user_email.strip().lower()).scalar_subquery()
            return Image.owner_id == owner
        if self.since is not None:
            return Image.created_at >= datetime(self.since.year, self.since.month, self.since.day, tzinfo=UTC)
        return true()


async def run(settings: Settings, selection: Selection, *, force: bool, window: int = WINDOW) -> int:
    """Regenerate what the selection holds; 0 when every thumbnail was made, 1 when some were left as they were."""
    recipe = thumbnail_recipe(settings)
    started = time.monotonic()

    async def job(resources: JobResources, subject: str) -> None:
        await maintenance.regenerate(resources, uuid.UUID(subject))

    async with bulk_jobs(settings, REGENERATE, job, command=COMMAND) as tools:
        if not await _check_selection(tools.sessionmaker, selection):
            return 1
        selected = and_(Image.thumbnail_status == ThumbnailStatus.READY, selection.condition())
        if force:
            async with background_session(tools.sessionmaker) as session:
                await session.execute(update(Image).where(selected).values(thumbnail_recipe=None))
        outdated = and_(selected, or_(Image.thumbnail_recipe.is_(None), Image.thumbnail_recipe != recipe))
        async with read_session(tools.sessionmaker) as session:
            total = int(await session.scalar(select(func.count()).select_from(Image).where(outdated)) or 0)
        if total == 0:
            print(f"{COMMAND}: nothing to do: the selected thumbnails are made with {recipe} (--force redoes them)")
            return 0
        print(f"{COMMAND}: {total:,} thumbnails to make with recipe {recipe}", flush=True)
        done = regenerated = failures = 0
        after: tuple[datetime, uuid.UUID] | None = None
        while True:
            batch = await _next_window(tools.sessionmaker, outdated, after, window)
            if not batch:
                break
            failures += await tools.runner.run([str(image_id) for image_id, _ in batch])
            ids = [image_id for image_id, _ in batch]
            left = await _count(tools.sessionmaker, and_(outdated, Image.id.in_(ids)))
            done += len(batch)
            regenerated += len(batch) - left
            after = (batch[-1][1], batch[-1][0])
            share = 100 * done / total
            tally = f", {done - regenerated:,} left as they were" if done > regenerated else ""
            print(f"{COMMAND}: regenerated {regenerated:,}/{total:,} ({share:.0f}%){tally}", flush=True)
        unsent = tools.cache.pending_invalidations if tools.cache is not None else 0
    left_over = done - regenerated
    print(f"{COMMAND}: done in {time.monotonic() - started:.1f} s: {regenerated:,} regenerated, {left_over:,} left")
    if left_over or failures:
        queued = settings.job_queue == "postgres"
        where = "`python -m app.admin jobs failed`" if queued else "the warnings above"
        # A job records the recipe of the settings it runs with: a worker's, on the worker tier.
        stale = "; if the workers run with other settings than this command, restart them and run it again"
        print(
            f"{COMMAND}: {left_over:,} thumbnails were left as they were ({failures:,} failed jobs: see {where})"
            + (stale if queued else ""),
            file=sys.stderr,
        )
    if unsent:
        print(
            f"{COMMAND}: {unsent} cached entries could not be invalidated (Redis failed meanwhile); they expire "
            f"within {settings.cache_ttl_seconds} s",
            file=sys.stderr,
        )
    return 1 if left_over or failures or unsent else 0


async def _check_selection(sessionmaker: async_sessionmaker[AsyncSession], selection: Selection) -> bool:
    """Whether the named account and images exist (saying which do not); notes on named images not ready."""
    async with read_session(sessionmaker) as session:
        if selection.user_email is not None:
            email = selection.user_email.strip().lower()
            if await session.scalar(select(User.id).where(User.email == email)) is None:
                print(f"{COMMAND}: no account has the email {selection.user_email!r}; nothing done", file=sys.stderr)
                return False
        if not selection.image_ids:
            return True
        rows = await session.execute(select(Image.id, Image.thumbnail_status).where(selection.condition()))
        states = dict(rows.tuples().all())
    unknown = [str(image_id) for image_id in selection.image_ids if image_id not in states]
    if unknown:
        print(f"{COMMAND}: no such image: {', '.join(unknown)}; nothing done", file=sys.stderr)
        return False
    for image_id, status in states.items():
        if status == ThumbnailStatus.PENDING:
            print(f"{COMMAND}: {image_id}: its thumbnail is pending; the usual job makes it", file=sys.stderr)
        elif status == ThumbnailStatus.FAILED:
            print(f"{COMMAND}: {image_id}: its thumbnail failed; see `jobs failed` and `jobs retry`", file=sys.stderr)
    return True


async def _next_window(
    sessionmaker: async_sessionmaker[AsyncSession],
    outdated: ColumnElement[bool],
    after: tuple[datetime, uuid.UUID] | None,
    size: int,
) -> list[tuple[uuid.UUID, datetime]]:
    query = select(Image.id, Image.created_at).where(outdated)
    if after is not None:
        # Keyset paging in upload order: an image left as it was is not met again in this run.
        query = query.where(tuple_(Image.created_at, Image.id) > tuple_(*after))
    async with read_session(sessionmaker) as session:
        rows = await session.execute(query.order_by(Image.created_at, Image.id).limit(size))
        return [(row.id, row.created_at) for row in rows]


async def _count(sessionmaker: async_sessionmaker[AsyncSession], condition: ColumnElement[bool]) -> int:
    async with read_session(sessionmaker) as session:
        return int(await session.scalar(select(func.count()).select_from(Image).where(condition)) or 0)
