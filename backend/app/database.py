"""Engine and session factories, and the request's session: the one place that commits.

Services only `flush()`. Work that must only follow a commit is registered on the session with
`after_commit` (deleting a blob once its row is gone). A single statement that needs no transaction
runs alone in autocommit mode (`execute_alone`): an upload's INSERT, a background job's UPDATE.
Reads that may lag go through `app.services.read_routing`, on the engines made here: the primary's
and, with DATABASE_REPLICA_URL, a streaming replica's (`create_replica_engine`), which only reads.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Executable, Row, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from starlette.requests import Request

from app.config import Settings

logger = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None]]
_AFTER_COMMIT = "chitram.after_commit"


def create_engine(settings: Settings) -> AsyncEngine:
    """An async engine for PostgreSQL (pooled; closed connections replaced) or the embedded SQLite file."""
    url = make_url(settings.database_url)
    if url.drivername.startswith("sqlite"):
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=10,
        connect_args={"timeout": 5, "command_timeout": 30},
    )
    # A connection dropped by a database restart is replaced instead of failing a request.
    event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    return engine


# A read that fails on the replica runs again on the primary (app.services.read_routing, which also
# bounds the whole attempt), so the replica gets little time to answer: these end an attempt that a
# down or hung replica holds up.
REPLICA_CONNECT_TIMEOUT_SECONDS = 1.0
REPLICA_COMMAND_TIMEOUT_SECONDS = 2.0
REPLICA_POOL_TIMEOUT_SECONDS = 1.0


def create_replica_engine(settings: Settings) -> AsyncEngine | None:
    """The streaming replica's engine (DATABASE_REPLICA_URL), pooled like the primary's; None without one."""
    if settings.database_replica_url is None:
        return None
    engine = create_async_engine(
        make_url(settings.database_replica_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=REPLICA_POOL_TIMEOUT_SECONDS,
        connect_args={"timeout": REPLICA_CONNECT_TIMEOUT_SECONDS, "command_timeout": REPLICA_COMMAND_TIMEOUT_SECONDS},
    )
    event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    return engine


def _replace_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Have the pool replace a connection that the server has closed (restart, idle timeout, termination).

    asyncpg marks a connection closed as soon as the event loop reads the server's goodbye, so this
    costs no round trip. `pool_pre_ping` did the same with a ping on every check-out, which the
    asyncpg dialect sends as BEGIN, a statement and ROLLBACK: three round trips (ADR 0002).
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while an upload writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def after_commit(session: AsyncSession, callback: Callback) -> None:
    """Run `callback` once this request's transaction has committed."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


async def _run_callbacks(session: AsyncSession, key: str) -> None:
    callbacks: list[Callback] = session.info.pop(key, [])
    for callback in callbacks:
        try:
            await callback()
        except Exception:
            # The response is already decided; a failed follow-up is logged, never raised.
            logger.exception("transaction follow-up %s failed", getattr(callback, "__name__", callback))


async def abandon(session: AsyncSession) -> None:
    """Undo this request's work when a handler answers an error itself instead of raising it.

    Rolls back (the commit that follows then has nothing to do) and drops its `after_commit` work,
    exactly as if the error had propagated.
    """
    session.info.pop(_AFTER_COMMIT, None)
    await session.rollback()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session: commits when the handler returns, rolls back when it raises."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            session.info.pop(_AFTER_COMMIT, None)
            await session.rollback()  # may fail too when the connection died mid-commit
            raise
        await _run_callbacks(session, _AFTER_COMMIT)


@asynccontextmanager
async def transaction(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncConnection]:
    """One transaction on a pooled connection (Core, no ORM): committed when the block ends, rolled back if it raises.

    For the short locked steps of shared originals (ADR 0014): an upload's INSERT, a garbage collection.
    """
    engine: AsyncEngine = sessionmaker.kw["bind"]
    async with engine.begin() as connection:
        yield connection


@asynccontextmanager
async def background_session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for work outside a request (jobs receive ids and open their own): one transaction."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def execute_alone(
    sessionmaker: async_sessionmaker[AsyncSession], statement: Executable, params: dict[str, Any]
) -> tuple[int, Row[Any] | None]:
    """Run one statement in autocommit mode; return its row count and first returned row, if any.

    A single UPDATE is atomic by itself, and without a session's BEGIN and COMMIT it costs one
    round trip instead of three: background jobs run one of these per step of every job.
    """
    async with _autocommit_connection(sessionmaker) as connection:
        result = await connection.execute(statement, params)
        row = result.first() if result.returns_rows else None
        return result.rowcount, row


@asynccontextmanager
async def read_session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session that only reads, on an autocommit connection: no BEGIN and ROLLBACK round trips.

    Each statement sees committed data as of its own start, which is all a single lookup needs.
    """
    async with _autocommit_connection(sessionmaker) as connection, session_on(connection) as session:
        yield session


def session_on(connection: AsyncConnection) -> AsyncSession:
    """A session that reads on `connection` (an autocommit one from `read_connection`); it never commits."""
    return AsyncSession(bind=connection, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def read_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection of `engine` in autocommit mode (reset when it goes back): reads without BEGIN."""
    async with engine.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")


@asynccontextmanager
async def _autocommit_connection(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncConnection]:
    """A pooled connection of the sessionmaker's engine in autocommit mode."""
    engine: AsyncEngine = sessionmaker.kw["bind"]
    async with read_connection(engine) as connection:
        yield connection
