"""`python -m app.admin scrub`: read every stored original back and check it against its checksum."""

from __future__ import annotations

import sys
import time

from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.admin.bulk import WINDOW, bulk_jobs
from app.config import Settings
from app.database import background_session, read_session
from app.jobs import maintenance
from app.jobs.kinds import SCRUB
from app.models import Image, IntegrityFinding, IntegrityProblem, MaintenanceRun
from app.models.base import utc_now

COMMAND = "scrub"
DESCRIPTION = """Read every stored original back, in checksum order, and check that its bytes still hash to
its checksum. Problems are logged, kept in the integrity_findings table (a later run that finds the object
whole again removes them) and listed at the end; the exit status is 1 if there are any. Runs as
low-priority jobs (on the worker tier with JOB_QUEUE=postgres, else in this process) and saves its place
after each window: interrupted (Ctrl-C), it goes on from there when run again, unless told to --restart."""


async def run(settings: Settings, *, restart: bool, window: int = WINDOW) -> int:
    """Scrub what is left of the walk; 0 when every original is whole, 1 when something is missing or altered."""
    started = time.monotonic()
    async with bulk_jobs(settings, SCRUB, maintenance.scrub, command=COMMAND) as tools:
        sessionmaker = tools.sessionmaker
        place = await _place(sessionmaker, restart=restart)
        async with read_session(sessionmaker) as session:
            total = int(await session.scalar(select(func.count(func.distinct(Image.checksum)))) or 0)
        if place.cursor is not None:
            print(f"{COMMAND}: going on after {place.done:,}/{total:,} originals (--restart starts over)", flush=True)
        done, cursor, failures = place.done, place.cursor, 0
        while True:
            checksums = await _next_window(sessionmaker, cursor, window)
            if not checksums:
                break
            failures += await tools.runner.run(checksums)
            done, cursor = done + len(checksums), checksums[-1]
            await _save_place(sessionmaker, cursor, done)
            share = 100 * done / max(total, done)
            print(f"{COMMAND}: checked {done:,}/{max(total, done):,} originals ({share:.0f}%)", flush=True)
        findings = await _finish(sessionmaker)
    missing = [finding for finding in findings if finding.problem == IntegrityProblem.MISSING]
    mismatched = [finding for finding in findings if finding.problem == IntegrityProblem.MISMATCH]
    elapsed = time.monotonic() - started
    tally = f"{done:,} checked, {len(missing):,} missing, {len(mismatched):,} mismatched"
    print(f"{COMMAND}: done in {elapsed:.1f} s: {tally}")
    for finding in missing:
        print(f"  missing   {finding.storage_key} (checksum {finding.checksum})")
    for finding in mismatched:
        actual = finding.actual_checksum
        print(f"  mismatch  {finding.storage_key} (checksum {finding.checksum}, its bytes hash to {actual})")
    if failures:
        where = "`python -m app.admin jobs failed`" if settings.job_queue == "postgres" else "the warnings above"
        print(f"{COMMAND}: {failures:,} originals could not be checked (see {where}); run it again", file=sys.stderr)
    return 1 if findings or failures else 0


async def _place(sessionmaker: async_sessionmaker[AsyncSession], *, restart: bool) -> MaintenanceRun:
    """Where the walk stands: an interrupted run's place, or a new run's start."""
    async with background_session(sessionmaker) as session:
        place = await session.get(MaintenanceRun, COMMAND)
        if place is not None and restart:
            await session.delete(place)
            await session.flush()
            place = None
        if place is None:
            place = MaintenanceRun(name=COMMAND, cursor=None, done=0)
            session.add(place)
        return place


async def _next_window(sessionmaker: async_sessionmaker[AsyncSession], after: str | None, size: int) -> list[str]:
    query = select(Image.checksum).distinct()
    if after is not None:
        query = query.where(Image.checksum > after)
    async with read_session(sessionmaker) as session:
        return list(await session.scalars(query.order_by(Image.checksum).limit(size)))


async def _save_place(sessionmaker: async_sessionmaker[AsyncSession], cursor: str, done: int) -> None:
    async with background_session(sessionmaker) as session:
        place = await session.get(MaintenanceRun, COMMAND)
        if place is None:  # --restart from another run meanwhile: this one goes on with its own place
            place = MaintenanceRun(name=COMMAND)
            session.add(place)
        place.cursor, place.done, place.updated_at = cursor, done, utc_now()


async def _finish(sessionmaker: async_sessionmaker[AsyncSession]) -> list[IntegrityFinding]:
    """End the walk: findings about objects no image names any more go, the place is forgotten; what is left."""
    async with background_session(sessionmaker) as session:
        named = exists().where(
            Image.checksum == IntegrityFinding.checksum, Image.storage_key == IntegrityFinding.storage_key
        )
        await session.execute(delete(IntegrityFinding).where(~named))
        await session.execute(delete(MaintenanceRun).where(MaintenanceRun.name == COMMAND))
    async with read_session(sessionmaker) as session:
        ordered = select(IntegrityFinding).order_by(IntegrityFinding.checksum, IntegrityFinding.storage_key)
        return list(await session.scalars(ordered))
