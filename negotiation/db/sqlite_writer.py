"""SQLite's writer: write units run one after another, queued units committed together."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from negotiation.db.errors import invalidating, is_locked
from negotiation.db.statements import DriverConnection, driver_execute

T = TypeVar("T")

logger = logging.getLogger("negotiation.db")


class GroupCommit:
    """Runs SQLite write units one after another, committing queued units together.

    While a transaction commits (an fsync with ``synchronous=FULL``), new units queue up; the
    next transaction takes all of them (``BEGIN IMMEDIATE``), each unit inside its own
    SAVEPOINT (a unit that raises rolls back alone, exactly as its own transaction would), and
    commits once. Every caller is answered only after that commit, so a returned result is as
    durable as before; units still run one after another, in arrival order.

    What may wait runs on the writer thread: taking the write lock when it is held elsewhere
    (BEGIN, and the lock file below) and COMMIT. A transaction is first begun on the loop's
    thread without waiting (the lock file tried, ``busy_timeout`` 0 for the BEGIN); only if
    either would wait does BEGIN go to the writer thread. Under load each hop back to the loop
    waits for a whole turn of a busy loop, and the hop to BEGIN was one of the two per batch.
    Hot units (``Database.write_hot``: a round, a few indexed hot
    statements) run on the loop's thread between the two, like quick reads: on the writer
    thread every statement released the GIL and waited to take it back from the loop, which
    under mixed load made a unit take five times its own CPU time while it held the write lock.
    Other units may touch many rows (a purge) and run on the writer thread, where SQLite's C
    code runs without the GIL.

    Several service processes on one file (``--workers``) take turns through an exclusive
    ``flock`` on ``lock_path`` around each transaction. Without it they met in SQLite's busy
    handler, which polls with sleeps of up to 100 ms: seconds of tail latency under load. A
    waiter on the lock is woken the moment it is released. Other programs writing the file
    (migrations, the CLI) do not take it and are still arbitrated by ``busy_timeout``.
    """

    #: Units per transaction at most: one commit never waits on an unbounded batch, and one
    #: batch holds the event loop for a few milliseconds at most (a round is ~0.15 ms).
    MAX_BATCH = 32

    def __init__(
        self,
        engine: Engine,
        executor: ThreadPoolExecutor,
        lock_path: str | None,
        busy_timeout_ms: int,
    ) -> None:
        self._engine = engine
        self._busy_timeout_ms = busy_timeout_ms
        self._executor = executor
        self._pending: list[_Unit] = []
        self._drainer: asyncio.Task[None] | None = None
        self._lock_path = lock_path
        self._lock_fd: int | None = None

    async def run(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], *, hot: bool
    ) -> T:
        """``fn(conn, *args, **kwargs)`` in the next transaction; its result once committed.

        A ``hot`` unit runs on the loop's thread on a :class:`DriverConnection`; any other on
        the writer thread on the ``Connection``.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append(_Unit(fn, args, kwargs, future, hot))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.MAX_BATCH]
                del self._pending[: self.MAX_BATCH]
                await self._commit(batch)
        finally:
            self._drainer = None

    @contextlib.contextmanager
    def _processes_take_turns(self, *, wait: bool) -> Iterator[bool]:
        """Holds the lock file; yields False (holding nothing) if not ``wait`` and it is taken."""
        if self._lock_path is None:
            yield True
            return
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:  # e.g. a read-only directory: the writes will say why
                logger.debug("no writer lock file %s: %s", self._lock_path, exc)
                self._lock_path = None
                yield True
                return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file (after the executor has finished)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _begin(self) -> tuple[contextlib.ExitStack, Connection]:
        """Writer thread: the lock file, a connection, ``BEGIN IMMEDIATE`` (each may wait)."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._processes_take_turns(wait=True))
            conn = stack.enter_context(self._engine.connect())
            stack.enter_context(invalidating(conn))
            stack.enter_context(conn.begin())
            return stack.pop_all(), conn

    def _begin_at_once(self) -> tuple[contextlib.ExitStack, Connection] | None:
        """Loop's thread: as :meth:`_begin`, or None where that would wait for the lock file
        or for another connection's write lock. Only on a connection the pool holds: opening
        one sets the journal mode, which waits on the lock, and the writer thread may still hold
        the pool's only one (a transaction abandoned at shutdown, rolling back there)."""
        if not self._engine.pool.checkedin():  # type: ignore[attr-defined]
            return None
        with contextlib.ExitStack() as stack:
            if not stack.enter_context(self._processes_take_turns(wait=False)):
                return None
            conn = stack.enter_context(self._engine.connect())
            stack.enter_context(invalidating(conn))
            driver_execute(conn, "PRAGMA busy_timeout = 0")
            try:
                stack.enter_context(conn.begin())
            except DBAPIError as exc:
                if is_locked(exc):
                    return None
                raise
            finally:
                driver_execute(conn, f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            return stack.pop_all(), conn

    @staticmethod
    def _end(transaction: contextlib.ExitStack, failure: BaseException | None) -> None:
        """Writer thread: COMMIT, or ROLLBACK after ``failure``; then the connection and the
        lock file go back. Raises if COMMIT fails."""
        if failure is None:
            transaction.close()
        else:
            transaction.__exit__(type(failure), failure, failure.__traceback__)

    def _abandoned(self, begun: Future[Any]) -> None:
        # The loop stopped waiting (shutdown) while the writer thread began a transaction: roll
        # it back there, so the lock file is not held for the rest of the process's life.
        if not begun.cancelled() and begun.exception() is None:
            self._end(begun.result()[0], asyncio.CancelledError())

    def _run_unit(self, conn: Connection, unit: _Unit, grouped: bool) -> tuple[bool, Any]:
        """The unit's outcome; in a group, a unit that raises is rolled back alone.

        Plain SAVEPOINT statements on the driver: SQLAlchemy's begin_nested() cost as much as
        the unit itself. Units leave their own savepoints closed.
        """
        on: Connection | DriverConnection = (
            DriverConnection(conn.connection, self._engine) if unit.hot else conn
        )
        if not grouped:
            return True, unit.fn(on, *unit.args, **unit.kwargs)
        driver_execute(conn, "SAVEPOINT unit")
        try:
            result = unit.fn(on, *unit.args, **unit.kwargs)
        except Exception as exc:
            driver_execute(conn, "ROLLBACK TO unit")
            driver_execute(conn, "RELEASE unit")
            return False, exc
        driver_execute(conn, "RELEASE unit")
        return True, result

    async def _commit(self, batch: list[_Unit]) -> None:
        try:
            at_once = self._begin_at_once()
            if at_once is None:
                begun = self._executor.submit(self._begin)
                try:
                    at_once = await asyncio.wrap_future(begun)
                except asyncio.CancelledError:
                    begun.add_done_callback(self._abandoned)
                    raise
        except Exception as exc:  # BEGIN failed: no unit of the batch ran (not a cancellation)
            _settle_all(batch, [(False, exc)] * len(batch))
            return
        transaction, conn = at_once
        outcomes: list[tuple[bool, Any]] = []
        failure: BaseException | None = None
        grouped = len(batch) > 1
        try:
            for unit in batch:
                if unit.hot:
                    outcomes.append(self._run_unit(conn, unit, grouped))
                else:
                    on_writer = self._executor.submit(self._run_unit, conn, unit, grouped)
                    outcomes.append(await asyncio.wrap_future(on_writer))
        except asyncio.CancelledError:
            # The loop stopped waiting (shutdown) during a unit on the writer thread: roll back
            # there once the unit is done (the writer runs one thing at a time, in order).
            self._executor.submit(self._end, transaction, asyncio.CancelledError())
            raise
        except Exception as exc:
            failure = exc
        try:
            # Shielded from cancellation by the executor: COMMIT or ROLLBACK runs to its end.
            await asyncio.wrap_future(self._executor.submit(self._end, transaction, failure))
        except Exception as exc:  # COMMIT failed: no unit of the batch was stored
            failure = exc
        if failure is not None:
            outcomes = [(False, failure)] * len(batch)
        _settle_all(batch, outcomes)


def _settle_all(batch: list[_Unit], outcomes: list[tuple[bool, Any]]) -> None:
    """Answer each unit's caller (one that gave up waiting is skipped)."""
    for unit, (ok, value) in zip(batch, outcomes, strict=True):
        if unit.future.cancelled():
            continue
        if ok:
            unit.future.set_result(value)
        else:
            unit.future.set_exception(value)


class _Unit:
    __slots__ = ("args", "fn", "future", "hot", "kwargs")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: asyncio.Future[Any],
        hot: bool,
    ) -> None:
        self.fn, self.args, self.kwargs, self.future, self.hot = fn, args, kwargs, future, hot


def writer_lock_path(url: URL) -> str | None:
    """``<database file>-writer.lock`` beside a SQLite file; None for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return f"{database}-writer.lock"
