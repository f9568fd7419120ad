"""Where a read that may lag runs: the streaming replica once it has caught up, else the primary (ADR 0019).

Clients carry nothing that says what they wrote (curl keeps no cookie), and the write may have gone
through another process, so the primary itself is asked. Before a routed read, its WAL position is
fetched by a query sent after the read began (the barrier): every write acknowledged to anyone
before then ends at or before it. The replica serves the read only if it has replayed that far, as
asked on the very connection that then runs the read; replay only moves forward, so the read sees
every such write, and metadata it puts in the cache is never older than what the primary would
have given. Otherwise the read runs on the primary.

Cost of a routed read: the barrier (one round trip to the primary, shared by every read that arrived
while the previous one was on its way), the replay check (one round trip to the replica, skipped when
the connection last saw replay past the barrier) and the read. A replica that fails (refused, gone,
not a standby) or has not answered within REPLICA_ATTEMPT_SECONDS sends that read to the primary and
is skipped for a cool-down, then probed by one read; a query cancelled by a recovery conflict only
sends its own read back, and a primary that does not say where it is within BARRIER_SECONDS sends the
read to the primary. Where reads went is counted in `chitram_db_reads_total{target, reason}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app.database import read_connection, read_session, session_on
from app.observability.metrics import TALLY
from app.services.breaker import DEFAULT_COOLDOWN_SECONDS, Breaker

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
ReplicaState = Literal["connected", "disconnected", "disabled"]
Read = Callable[[AsyncSession], Awaitable[T]]

# How long a read gives the replica (connection, replay check and the read itself) before it runs on
# the primary instead; the connection's own time-outs (app.database) end the abandoned attempt.
REPLICA_ATTEMPT_SECONDS = 1.0
# How long a read waits for the primary's position before it runs on the primary instead: the question
# is asked for many reads at once, so one stuck connection must not hold them all for a statement timeout.
BARRIER_SECONDS = 1.0
# The write position, not the insert position: with synchronous_commit on (PostgreSQL's default, never
# changed by Chitram) an acknowledged commit is written, and an idle insert position can point past a
# page header that replay never reaches.
PRIMARY_POSITION = "SELECT pg_current_wal_lsn()"
# NULL on a server that is not (or no longer) a standby: its data need not follow the primary's.
REPLAY_POSITION = "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() END"
# What the replica last said it had replayed, kept with the pooled connection: it is dropped with the
# connection, and a connection that still works has talked to the same server (and its replay) throughout.
_REPLAYED = "chitram.replayed"
# A replica that fails like this is skipped for a cool-down (its reads run on the primary).
REPLICA_ERRORS: tuple[type[Exception], ...] = (DBAPIError, PoolTimeoutError, OSError)
# "canceling statement due to conflict with recovery": the replica is fine, only this query lost.
RECOVERY_CONFLICT_STATES = frozenset({"40001", "40P01"})


@dataclass(frozen=True, slots=True)
class Fallback:
    """The replica did not serve the read: why (a `reason` of `chitram_db_reads_total`), and the error
    that makes the breaker skip the replica for a while (None: the replica is fine, e.g. it lags)."""

    reason: str
    error: BaseException | None = None


class NotAStandby(Exception):
    """The replica's server is not in recovery (promoted, or not a replica at all)."""


REPLICA_FAILURES: tuple[type[Exception], ...] = (*REPLICA_ERRORS, NotAStandby)
BARRIER_ERRORS: tuple[type[Exception], ...] = (TimeoutError, *REPLICA_ERRORS)


class ReplicaBreaker(Breaker):
    """Skips the replica for a cool-down after a failure (its reads run on the primary meanwhile)."""

    log = logger
    went_down = "database replica: unusable (%s: %s); reads go to the primary, retrying every %.1f s"
    came_back = "database replica: answering again after %.1f s; reads go to it again"


class PrimaryPosition:
    """The primary's WAL position, asked once for every read that was waiting when the question was sent.

    A read may only use an answer to a query sent after it began: an earlier query can predate a write
    acknowledged before the read. So a read that comes while a query is on its way waits for the next
    one, sent as soon as that one is answered, for every read that came meanwhile (like a group commit).
    """

    def __init__(self, fetch: Callable[[], Awaitable[int]]) -> None:
        self._fetch = fetch
        self._sent: asyncio.Future[int] | None = None
        self._next: asyncio.Future[int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # referenced until done, so none is collected early

    async def after_now(self) -> int:
        """A WAL position the primary reported in answer to a query sent after this call began."""
        if self._sent is None:
            future = self._sent = self._ask(asyncio.get_running_loop().create_future())
        else:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            future = self._next
        # Shielded: a read that gives up (its request cancelled) does not cancel the others' answer.
        return await asyncio.shield(future)

    def _ask(self, future: asyncio.Future[int]) -> asyncio.Future[int]:
        future.add_done_callback(_retrieve)
        task = asyncio.create_task(self._answer(future), name="primary-position")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    async def _answer(self, future: asyncio.Future[int]) -> None:
        try:
            position = await self._fetch()
        except asyncio.CancelledError:
            future.cancel()
            if self._next is not None:
                self._next.cancel()
            self._sent = self._next = None
            raise
        except Exception as error:
            future.set_exception(error)
        else:
            future.set_result(position)
        self._sent, self._next = self._next, None
        if self._sent is not None:
            self._ask(self._sent)


def _retrieve(future: asyncio.Future[int]) -> None:
    # Marks a failure as seen when every waiter has gone: asyncio would log it as never retrieved.
    if not future.cancelled():
        future.exception()


class ReadRouter:
    """Runs reads that may lag on the replica when it has caught up with the primary, else on the primary."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        replica: AsyncEngine | None,
        *,
        cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._primary: AsyncEngine = sessionmaker.kw["bind"]
        self._replica = replica
        self.breaker = ReplicaBreaker(cooldown_seconds)
        self._position = PrimaryPosition(self._primary_position)
        self._attempts: set[asyncio.Task[Any]] = set()  # referenced until done, so none is collected early

    def state(self) -> ReplicaState:
        """The last known state: `disabled` without a replica, else what the latest read or check saw."""
        if self._replica is None:
            return "disabled"
        return "disconnected" if self.breaker.is_down else "connected"

    async def run(self, read: Read[T]) -> T:
        """`read(session)` on the replica if it has replayed every write acknowledged before this call, else on
        the primary. `read` only reads (it may run twice: on the replica, then on the primary if that fails)."""
        if self._replica is None:
            return await self._on_primary(read, "no_replica")
        if not self.breaker.allows_call():
            return await self._on_primary(read, "replica_down")
        try:
            barrier = await asyncio.wait_for(self._position.after_now(), BARRIER_SECONDS)
        except BARRIER_ERRORS:
            # The primary did not say where it is: the read runs there (if the primary is down, it fails
            # there as it would without a replica).
            return await self._on_primary(read, "barrier_failed")
        outcome = self._settled(await self._bounded(self._on_replica(self._replica, read, barrier)))
        if isinstance(outcome, Fallback):
            return await self._on_primary(read, outcome.reason)
        TALLY.db_read("replica", "caught_up")
        return outcome

    async def check(self) -> ReplicaState:
        """Health check: ask the replica for its replay position now, ignoring the cool-down; record the answer."""
        if self._replica is None:
            return "disabled"
        outcome = self._settled(await self._bounded(self._probe(self._replica)))
        return "disconnected" if isinstance(outcome, Fallback) else "connected"

    def _settled(self, outcome: R | Fallback) -> R | Fallback:
        """Tell the breaker what an attempt that ended in time found (an abandoned one tells it nothing)."""
        if isinstance(outcome, Fallback) and outcome.error is not None:
            self.breaker.record_failure(outcome.error)
        elif not (isinstance(outcome, Fallback) and outcome.reason == "recovery_conflict"):
            self.breaker.record_success()
        return outcome

    @classmethod
    async def _on_replica(cls, replica: AsyncEngine, read: Read[T], barrier: int) -> T | Fallback:
        try:
            async with read_connection(replica) as connection:
                if await cls._replayed_past(connection, barrier):
                    async with session_on(connection) as session:
                        return await read(session)
            return Fallback("lagging")
        except REPLICA_ERRORS as error:
            if _recovery_conflict(error):
                return Fallback("recovery_conflict")
            return Fallback("replica_failed", error)
        except NotAStandby as error:
            return Fallback("not_standby", error)

    @classmethod
    async def _probe(cls, replica: AsyncEngine) -> Fallback | None:
        try:
            async with read_connection(replica) as connection:
                await cls._replay_position(connection)
        except REPLICA_FAILURES as error:
            return Fallback("replica_failed", error)
        return None

    async def _bounded(self, attempt: Coroutine[Any, Any, R]) -> R | Fallback:
        """`attempt`'s outcome, or a fallback once the replica has had REPLICA_ATTEMPT_SECONDS to answer.

        The attempt runs as a task of its own and is left to finish alone: after a statement times out on
        a hung replica, SQLAlchemy waits up to 2 s more for the connection to close gracefully. What it
        finds then is ignored: a replica that answers only after the read gave up is no replica to use.
        """
        task = asyncio.create_task(attempt)
        self._attempts.add(task)
        task.add_done_callback(self._attempt_done)
        done, _ = await asyncio.wait({task}, timeout=REPLICA_ATTEMPT_SECONDS)
        if not done:
            return Fallback("replica_failed", TimeoutError(f"no answer within {REPLICA_ATTEMPT_SECONDS} s"))
        return task.result()

    def _attempt_done(self, task: asyncio.Task[Any]) -> None:
        self._attempts.discard(task)
        if not task.cancelled():
            task.exception()  # seen: an abandoned attempt's error is not logged as never retrieved

    async def _on_primary(self, read: Read[T], reason: str) -> T:
        TALLY.db_read("primary", reason)
        async with read_session(self._sessionmaker) as session:
            return await read(session)

    async def _primary_position(self) -> int:
        async with read_connection(self._primary) as connection:
            position: int = (await connection.exec_driver_sql(PRIMARY_POSITION)).scalar_one()
        return position

    @classmethod
    async def _replayed_past(cls, connection: AsyncConnection, barrier: int) -> bool:
        """Whether the replica behind `connection` has replayed the WAL up to `barrier` (it never goes back)."""
        if connection.info.get(_REPLAYED, -1) >= barrier:
            return True
        return await cls._replay_position(connection) >= barrier

    @staticmethod
    async def _replay_position(connection: AsyncConnection) -> int:
        """How far the replica behind `connection` has replayed the WAL, asked now (and remembered with it)."""
        replayed: int | None = (await connection.exec_driver_sql(REPLAY_POSITION)).scalar_one()
        if replayed is None:
            raise NotAStandby("the replica's server is not in recovery")
        connection.info[_REPLAYED] = replayed
        return replayed


def _recovery_conflict(error: Exception) -> bool:
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlstate", None) in RECOVERY_CONFLICT_STATES
