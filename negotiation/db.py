"""Database access: URL handling and one way to run a unit of work on either database.

Every query and write in the service is a plain function over a synchronous SQLAlchemy Core
``Connection``. :class:`Database` runs such a function as one transaction:

* PostgreSQL: on an ``asyncpg`` engine through ``AsyncConnection.run_sync`` (no threads), or,
  for :func:`hot_unit` units, on the pooled driver connection.
* SQLite: on the standard ``sqlite3`` driver (the aiosqlite path costs a thread hop per
  statement and measured about 7x slower here). All writes of a process go through one writer
  connection, one at a time, and open with ``BEGIN IMMEDIATE`` so that read-then-write
  sequences are atomic across processes too. Writes that queue up while one commits are
  committed together (group commit, see :class:`_GroupCommit`): one fsync for many units
  instead of one each; worker processes take turns on a lock file. Reads marked
  :func:`quick_read` and writes marked :func:`hot_unit` run on the event loop's own thread
  (BEGIN and COMMIT of a write, which may wait, on the writer thread); other writes on the
  writer thread, other reads in a reader thread, one hop per transaction.

Failures are retried or classified here, once for every unit of work (see docs/RELIABILITY.md):
a lock held too long (SQLite ``database is locked``, PostgreSQL ``lock_timeout``), a serialization
failure, a deadlock or a unique violation rolls the attempt back and runs the unit again, at most
``db_retries`` more times, then raises :class:`DatabaseBusy`. A database that cannot be reached
raises :class:`DatabaseUnavailable` (its connection is invalidated, so the next transaction
reconnects); a value the database cannot store raises :class:`InvalidData`. A write, once
started, runs to its end even if the request that started it is cancelled (client gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import random
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

# SQLAlchemy's bridge from asyncio to synchronous code, as AsyncConnection.run_sync uses it.
from sqlalchemy.util.concurrency import greenlet_spawn

from negotiation.settings import Settings
from negotiation.statements import DriverConnection, driver_execute

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_QUICK = "_negotiation_quick_read"
_HOT = "_negotiation_hot_unit"
_OWN_TRANSACTION = "_negotiation_own_transaction"


def quick_read(fn: F) -> F:
    """Mark a read unit as a few index lookups returning at most one page of rows.

    It runs without BEGIN and COMMIT around it (each statement sees the data committed when it
    starts), and on SQLite on the event loop's thread. Handing it to a worker thread cost
    more than running it: under load the hop and the GIL hand-offs between ten reader threads
    and the loop doubled the CPU time of a session read. A reader in WAL mode never waits for
    writers, so the loop is held only for the unit's own work, most of which holds the GIL
    anyway. Leave unmarked anything that may scan (filters without an index, aggregates,
    reports): it keeps a worker thread, where SQLite's C code runs without the GIL.
    """
    setattr(fn, _QUICK, True)
    return fn


def hot_unit(fn: F) -> F:
    """Mark a unit of work whose statements are all :class:`~negotiation.statements.HotStatement`.

    On PostgreSQL it runs on a :class:`~negotiation.statements.DriverConnection` (a pooled
    asyncpg connection with no SQLAlchemy ``Connection`` around it): the round paths, where
    the asyncio ``Connection``'s own work cost more than the statements. It is then handed no
    ``Connection`` to call ``execute`` on, so a statement that is not hot fails at once, in the
    PostgreSQL tests, rather than running outside the unit's transaction. A read runs without
    a transaction there, as a :func:`quick_read` does (it streams nothing). SQLite runs it as
    any other unit.
    """
    setattr(fn, _HOT, True)
    return fn


def own_transaction(fn: F) -> F:
    """Mark a :func:`hot_unit` write that starts outside a transaction on PostgreSQL.

    Each of its statements commits on its own until it calls
    :meth:`~negotiation.statements.DriverConnection.begin`; a transaction it begins is
    committed when it returns. For a write that is one statement when nothing competes with it
    (recording a round) and takes locks in a transaction only when something does. Elsewhere
    (SQLite, or inside another unit's transaction) it runs in that transaction as usual.
    """
    setattr(fn, _OWN_TRANSACTION, True)
    return fn


def _marked(fn: Callable[..., Any], mark: str) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return bool(getattr(fn, mark, False))


logger = logging.getLogger("negotiation.db")


class DatabaseUnavailable(Exception):
    """The database could not be reached (connection refused, file unreadable, …)."""


class DatabaseBusy(Exception):
    """The database stayed locked by another writer for longer than the busy budget."""


class InvalidData(Exception):
    """The database refused a value of the request (e.g. a NUL character in PostgreSQL text)."""


#: PostgreSQL SQLSTATEs after which a unit of work is rolled back and run again.
_PG_RETRY = {
    "40001": "serialization failure",
    "40P01": "deadlock",
    "55P03": "lock timeout",
    "23505": "unique violation",
}


def normalize_url(url: str | URL, *, asynchronous: bool) -> URL:
    """Return ``url`` with the driver this service uses for it.

    ``sqlite://``, ``sqlite+aiosqlite://``, ``postgresql://``, ``postgres://`` and
    ``postgresql+asyncpg://`` all name the same databases; SQLite runs on ``sqlite3`` (or
    ``aiosqlite`` when ``asynchronous``, for Alembic), PostgreSQL always on ``asyncpg``.
    """
    if isinstance(url, str) and url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(
        f"unsupported database URL scheme {parsed.drivername!r}: use sqlite or postgresql"
    )


def is_sqlite(url: str | URL) -> bool:
    """True when ``url`` names a SQLite database."""
    return normalize_url(url, asynchronous=False).get_backend_name() == "sqlite"


def _sqlite_on_connect(settings: Settings) -> Callable[[Any, ConnectionPoolEntry], None]:
    def on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(settings.sqlite_busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {settings.sqlite_synchronous}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    return on_connect


def _sqlite_engine(url: URL, settings: Settings, *, begin: str, pool_size: int) -> Engine:
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        connect_args={
            "check_same_thread": False,
            "timeout": settings.sqlite_busy_timeout_ms / 1000,
        },
    )
    event.listen(engine, "connect", _sqlite_on_connect(settings))
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
    return engine


def _sqlstate(exc: DBAPIError) -> str:
    return str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


def _is_retryable(exc: DBAPIError) -> bool:
    return _is_locked(exc) or _sqlstate(exc) in _PG_RETRY


def _is_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        # 08: connection exceptions; 57P: the server shutting down or starting up; 3D000 and
        # 28: the database or role in the URL does not exist, or the password is refused;
        # 42P01: the schema is not there (a database not migrated yet), as "no such table" on
        # SQLite.
        if exc.connection_invalidated or _sqlstate(exc).startswith(
            ("08", "57P", "3D000", "28", "42P01")
        ):
            return True
        if isinstance(exc, OperationalError):
            text = str(exc.orig).lower()
            return any(
                s in text
                for s in (
                    "unable to open",
                    "readonly",
                    "read-only",
                    "disk i/o",
                    "disk is full",
                    "not a database",
                    "no such table",
                )
            )
        return False
    return isinstance(exc, OSError | ConnectionError)


class Database:
    """Runs units of work (functions over a Core ``Connection``) on the configured database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = normalize_url(settings.database_url, asynchronous=False)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._async_engine: AsyncEngine | None = None
        self._reader: Engine | None = None
        self._writer: Engine | None = None
        self._write_executor: ThreadPoolExecutor | None = None
        self._read_executor: ThreadPoolExecutor | None = None
        self._loop_reader: Connection | None = None
        if self.is_sqlite:
            readers = settings.db_pool_size
            self._writer = _sqlite_engine(self.url, settings, begin="BEGIN IMMEDIATE", pool_size=1)
            self._reader = _sqlite_engine(self.url, settings, begin="BEGIN", pool_size=readers)
            self._write_executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
            self._group_commit = _GroupCommit(
                self._writer, self._write_executor, _writer_lock_path(self.url)
            )
            self._read_executor = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        else:
            self._async_engine = create_async_engine(
                normalize_url(settings.database_url, asynchronous=True),
                pool_size=settings.db_pool_size,
                # No overflow: an overflow connection is closed as soon as it is returned, so
                # under sustained load above the pool size every request opened a connection
                # (p99 590 ms). Requests past the pool size wait for a pooled one instead.
                max_overflow=0,
                # No ping per checkout; a dead connection is noticed by its first statement
                # (a read is then run again, see _run; a write answers 503 to be retried).
                pool_pre_ping=False,
                pool_recycle=1800,
                # A row lock held elsewhere fails the statement after this long (then retried).
                connect_args={"server_settings": {"lock_timeout": str(settings.lock_timeout_ms)}},
            )
            # Quick reads skip BEGIN and COMMIT (two round trips). Under PostgreSQL's default
            # READ COMMITTED every statement takes its own snapshot inside a transaction too, so
            # they see exactly what they saw before. Other reads keep a transaction: a streaming
            # read (server-side cursor) needs one.
            self._pg_reader = self._async_engine.execution_options(isolation_level="AUTOCOMMIT")
        #: Writes still running (possibly for a request that has gone); awaited by dispose().
        self._writes: set[asyncio.Task[Any]] = set()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "sqlite" if self.is_sqlite else "postgresql"

    async def read(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` for reading only and return its result.

        One read transaction; on PostgreSQL a :func:`quick_read` unit runs in autocommit
        instead (each statement sees the data committed when it starts, as it would in a
        READ COMMITTED transaction).
        """
        return await self._run(fn, args, kwargs, write=False)

    async def write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in a write transaction, committed before returning.

        An exception raised by ``fn`` rolls the whole transaction back. The write is shielded:
        if the caller is cancelled (the client went away), the transaction still runs to its
        commit or rollback, so it is never left half-done by the cancellation.
        """
        task = asyncio.ensure_future(self._run(fn, args, kwargs, write=True))
        self._writes.add(task)
        task.add_done_callback(self._write_finished)
        return await asyncio.shield(task)

    def _write_finished(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Retrieved here too, so a write whose caller was cancelled logs no "never retrieved".
            logger.debug("write ended with %r", task.exception())

    async def _run(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], *, write: bool
    ) -> T:
        retries = self.settings.db_retries
        for attempt in range(retries + 1):
            try:
                return await self._attempt(fn, args, kwargs, write=write)
            except DBAPIError as exc:
                if exc.connection_invalidated and self._async_engine is not None:
                    # A pooled connection died while idle (the server restarted, or cut it):
                    # connections are not pinged before each checkout, which cost three round
                    # trips per request. The other idle ones are suspect too: replace the pool.
                    # A read runs again at once; a write answers 503, to be retried.
                    await self._async_engine.dispose()
                    if not write and attempt == 0:
                        continue
                if _is_retryable(exc) and attempt < retries:
                    # Nothing was committed: the attempt rolled back as a whole. Back off with
                    # jitter so the competing transactions do not collide again in step.
                    delay = min(0.5, 0.02 * 2**attempt) * (0.5 + random.random())  # noqa: S311
                    await asyncio.sleep(delay)
                    continue
                if _is_locked(exc) or _sqlstate(exc) in ("40001", "40P01", "55P03"):
                    raise DatabaseBusy(_short_reason(exc)) from exc
                if _is_unreachable(exc):
                    raise DatabaseUnavailable(_short_reason(exc)) from exc
                if _sqlstate(exc).startswith("22"):
                    raise InvalidData(_short_reason(exc)) from exc
                raise
            except (OSError, ConnectionError) as exc:
                raise DatabaseUnavailable(_short_reason(exc)) from exc
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _attempt(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], *, write: bool
    ) -> T:
        if self._async_engine is not None:
            if _marked(fn, _HOT):
                autocommit = not write or _marked(fn, _OWN_TRANSACTION)
                return await greenlet_spawn(self._on_driver, fn, args, kwargs, autocommit)
            if not write and getattr(fn, _QUICK, False):
                async with self._pg_reader.connect() as conn:
                    return await conn.run_sync(fn, *args, **kwargs)
            async with self._async_engine.begin() as conn:
                return await conn.run_sync(fn, *args, **kwargs)
        if write:
            return await self._group_commit.run(fn, args, kwargs)
        assert self._reader is not None
        if getattr(fn, _QUICK, False):
            return self._quick_read(fn, args, kwargs)
        loop = asyncio.get_running_loop()
        call = functools.partial(_in_transaction, self._reader, fn, args, kwargs)
        return await loop.run_in_executor(self._read_executor, call)

    def _on_driver(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], autocommit: bool
    ) -> T:
        # In a greenlet (greenlet_spawn), as AsyncConnection.run_sync runs a unit: the asyncpg
        # adapter awaits the driver from this synchronous code.
        assert self._async_engine is not None
        engine = self._async_engine.sync_engine
        try:
            fairy = engine.raw_connection()
        except engine.dialect.loaded_dbapi.Error as exc:  # as Engine.connect() would raise it
            raise DBAPIError.instance(
                None,
                None,
                exc,
                engine.dialect.loaded_dbapi.Error,
                connection_invalidated=engine.dialect.is_disconnect(exc, None, None),
                dialect=engine.dialect,
            ) from exc
        adapted = fairy.dbapi_connection
        try:
            # Autocommit: no BEGIN; otherwise the first statement begins the transaction.
            adapted.autocommit = autocommit  # type: ignore[union-attr]
            conn = DriverConnection(fairy, engine)
            result = fn(conn, *args, **kwargs)
            if not conn.autocommit:
                conn.commit()
            return result
        finally:
            if fairy.is_valid:
                adapted.autocommit = False  # type: ignore[union-attr]
            fairy.close()  # back to the pool, which rolls back a transaction left open

    def _quick_read(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        # One connection for every quick read: they run on the event loop's thread, one at a
        # time and to completion, so they never share it concurrently. A checkout and return
        # per read cost a tenth of a session read. No transaction is begun (each statement
        # reads the data committed when it starts, as on PostgreSQL); one that a statement
        # began implicitly is ended here, so no snapshot is held open between reads.
        conn = self._loop_reader
        if conn is None or conn.closed:
            assert self._reader is not None
            conn = self._loop_reader = self._reader.connect()
        try:
            with _invalidating(conn):
                return fn(conn, *args, **kwargs)
        finally:
            if conn.in_transaction():
                conn.rollback()

    async def ping(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the schema can be queried."""
        await self.read(_ping)

    async def dispose(self) -> None:
        """Let running writes finish, then close every pooled connection and worker thread."""
        if self._writes:
            await asyncio.wait(set(self._writes))
        if self._async_engine is not None:
            await self._async_engine.dispose()
        if self._loop_reader is not None:
            self._loop_reader.close()
        for engine in (self._reader, self._writer):
            if engine is not None:
                engine.dispose()
        for executor in (self._read_executor, self._write_executor):
            if executor is not None:
                executor.shutdown(wait=True)
        if self.is_sqlite:
            self._group_commit.close()


class _GroupCommit:
    """Runs SQLite write units one after another, committing queued units together.

    While a transaction commits (an fsync with ``synchronous=FULL``), new units queue up; the
    next transaction takes all of them (``BEGIN IMMEDIATE``), each unit inside its own
    SAVEPOINT (a unit that raises rolls back alone, exactly as its own transaction would), and
    commits once. Every caller is answered only after that commit, so a returned result is as
    durable as before; units still run one after another, in arrival order.

    What may wait runs on the writer thread: taking the write lock (BEGIN, and the lock file
    below) and COMMIT. Units marked :func:`hot_unit` (a round: a few indexed statements) run on
    the loop's thread between the two, like quick reads: on the writer thread every statement
    released the GIL and waited to take it back from the loop, which under mixed load made a
    unit take five times its own CPU time while it held the write lock. Other units may touch
    many rows (a purge) and run on the writer thread, where SQLite's C code runs without the GIL.

    Several service processes on one file (``--workers``) take turns through an exclusive
    ``flock`` on ``lock_path`` around each transaction. Without it they met in SQLite's busy
    handler, which polls with sleeps of up to 100 ms: seconds of tail latency under load. A
    waiter on the lock is woken the moment it is released. Other programs writing the file
    (migrations, the CLI) do not take it and are still arbitrated by ``busy_timeout``.
    """

    #: Units per transaction at most: one commit never waits on an unbounded batch, and one
    #: batch holds the event loop for a few milliseconds at most (a round is ~0.15 ms).
    MAX_BATCH = 32

    def __init__(self, engine: Engine, executor: ThreadPoolExecutor, lock_path: str | None) -> None:
        self._engine = engine
        self._executor = executor
        self._pending: list[_Unit] = []
        self._drainer: asyncio.Task[None] | None = None
        self._lock_path = lock_path
        self._lock_fd: int | None = None

    async def run(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append(_Unit(fn, args, kwargs, future))
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
    def _processes_take_turns(self) -> Iterator[None]:
        if self._lock_path is None:
            yield
            return
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:  # e.g. a read-only directory: the writes will say why
                logger.debug("no writer lock file %s: %s", self._lock_path, exc)
                self._lock_path = None
                yield
                return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
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
            stack.enter_context(self._processes_take_turns())
            conn = stack.enter_context(self._engine.connect())
            stack.enter_context(_invalidating(conn))
            stack.enter_context(conn.begin())
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

    @staticmethod
    def _run_unit(conn: Connection, unit: _Unit, grouped: bool) -> tuple[bool, Any]:
        """The unit's outcome; in a group, a unit that raises is rolled back alone.

        Plain SAVEPOINT statements on the driver: SQLAlchemy's begin_nested() cost as much as
        the unit itself. Units leave their own savepoints closed.
        """
        if not grouped:
            return True, unit.fn(conn, *unit.args, **unit.kwargs)
        driver_execute(conn, "SAVEPOINT unit")
        try:
            result = unit.fn(conn, *unit.args, **unit.kwargs)
        except Exception as exc:
            driver_execute(conn, "ROLLBACK TO unit")
            driver_execute(conn, "RELEASE unit")
            return False, exc
        driver_execute(conn, "RELEASE unit")
        return True, result

    async def _commit(self, batch: list[_Unit]) -> None:
        begun = self._executor.submit(self._begin)
        try:
            transaction, conn = await asyncio.wrap_future(begun)
        except asyncio.CancelledError:
            begun.add_done_callback(self._abandoned)
            raise
        except Exception as exc:  # BEGIN failed: no unit of the batch ran
            _settle_all(batch, [(False, exc)] * len(batch))
            return
        outcomes: list[tuple[bool, Any]] = []
        failure: BaseException | None = None
        grouped = len(batch) > 1
        try:
            for unit in batch:
                if _marked(unit.fn, _HOT):
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
    for unit, (ok, value) in zip(batch, outcomes, strict=True):
        _settle(unit.future, ok, value)


class _Unit:
    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: asyncio.Future[Any],
    ) -> None:
        self.fn, self.args, self.kwargs, self.future = fn, args, kwargs, future


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


@contextlib.contextmanager
def _invalidating(conn: Connection) -> Iterator[None]:
    """After an I/O error (disk full, file gone) the next transaction must reopen the file
    rather than reuse this connection's state."""
    try:
        yield
    except DBAPIError as exc:
        if _is_unreachable(exc) and not conn.invalidated:
            conn.invalidate()
        raise


def _in_transaction(
    engine: Engine, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    with engine.connect() as conn, _invalidating(conn), conn.begin():
        return fn(conn, *args, **kwargs)


def _writer_lock_path(url: URL) -> str | None:
    """``<database file>-writer.lock`` beside a SQLite file; None for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return f"{database}-writer.lock"


def _ping(conn: Connection) -> None:
    conn.exec_driver_sql("SELECT 1 FROM alembic_version")


def _short_reason(exc: BaseException) -> str:
    """A one-line reason that names no SQL and no credentials."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if "no such table" in text or "does not exist" in text:
        return "schema missing: run alembic upgrade head"
    return text[:200]
