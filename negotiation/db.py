"""Database access: URL handling and one way to run a unit of work on either database.

Every query and write in the service is a plain function over a synchronous SQLAlchemy Core
``Connection``. :class:`Database` runs such a function as one transaction:

* PostgreSQL: on an ``asyncpg`` engine through ``AsyncConnection.run_sync`` (no threads), or,
  for units marked :func:`~negotiation.units.hot_unit`, on the pooled driver connection.
  Reads asked for at the same time can share one unit (:meth:`Database.read_batched`, the
  round listings): one round trip for all of them.
* SQLite: on the standard ``sqlite3`` driver (the aiosqlite path costs a thread hop per
  statement and measured about 7x slower here). All writes of a process go through one writer
  connection, one at a time, and open with ``BEGIN IMMEDIATE`` so that read-then-write
  sequences are atomic across processes too. Writes that queue up while one commits are
  committed together (group commit, :class:`~negotiation.group_commit.GroupCommit`): one
  fsync for many units instead of one each; worker processes take turns on a lock file. Quick
  reads and hot writes (:mod:`negotiation.units`) run on the event loop's own thread (BEGIN
  and COMMIT of a write, which may wait, on the writer thread); other writes on the writer
  thread, other reads in a reader thread, one hop per transaction.

Failures are retried or classified here, once for every unit of work (see docs/RELIABILITY.md
and :mod:`negotiation.db_errors`): a lock held too long (SQLite ``database is locked``,
PostgreSQL ``lock_timeout``), a serialization failure, a deadlock or a unique violation rolls
the attempt back and runs the unit again, at most ``db_retries`` more times, then raises
``DatabaseBusy``. A database that cannot be reached raises ``DatabaseUnavailable`` (its
connection is invalidated, so the next transaction reconnects); a value the database cannot
store raises ``InvalidData``. A write, once started, runs to its end even if the request that
started it is cancelled (client gone).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

# SQLAlchemy's bridge from asyncio to synchronous code, as AsyncConnection.run_sync uses it.
from sqlalchemy.util.concurrency import greenlet_spawn

from negotiation.coalesce import Coalescer
from negotiation.db_errors import (
    DatabaseBusy,
    DatabaseUnavailable,
    InvalidData,
    invalidating,
    is_busy,
    is_retryable,
    is_unreachable,
    short_reason,
    sqlstate,
)
from negotiation.group_commit import GroupCommit, writer_lock_path
from negotiation.metrics import DB_RETRIES
from negotiation.settings import Settings
from negotiation.statements import DriverConnection
from negotiation.units import is_hot, is_quick_read, owns_transaction

T = TypeVar("T")

logger = logging.getLogger("negotiation.db")

#: Most items one shared read (Database.read_batched) answers; more wait for the next one.
READ_BATCH_MAX = 64


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
            self._group_commit = GroupCommit(
                self._writer, self._write_executor, writer_lock_path(self.url)
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
            #: Turns at the pool's connections, in the order they were asked for.
            self._connections = asyncio.Semaphore(settings.db_pool_size)
        #: Writes still running (possibly for a request that has gone); awaited by dispose().
        self._writes: set[asyncio.Task[Any]] = set()
        #: Shared reads in flight (read_batched), also awaited by dispose().
        self._batches: set[asyncio.Task[Any]] = set()
        self._coalescers: dict[Callable[..., Any], Coalescer[Any, Any]] = {}

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

    async def read_batched(self, fn: Callable[[Any, list[Any]], list[T]], item: Any, /) -> T:
        """``fn(conn, [item])[0]``; on PostgreSQL, from a call shared with concurrent callers.

        ``fn`` is a read unit that answers a list of items with one result each, in order.
        On PostgreSQL the items asked for at the same time go to one call of ``fn``
        (:class:`~negotiation.coalesce.Coalescer`): one round trip for all of them. SQLite
        has no round trip to save, so each item runs on its own. An error fails every item of
        its call, so items must already be valid for the database (ids in range, and so on).
        """
        if self.is_sqlite:
            return (await self.read(fn, [item]))[0]
        coalescer = self._coalescers.get(fn)
        if coalescer is None:
            coalescer = self._coalescers[fn] = Coalescer(
                functools.partial(self.read, fn),
                # A quarter of the pool per kind of read: the rest stays free for writes.
                slots=max(1, self.settings.db_pool_size // 4),
                max_batch=READ_BATCH_MAX,
                tasks=self._batches,
            )
        result: T = await coalescer(item)
        return result

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
            if attempt:
                DB_RETRIES.inc()
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
                if is_retryable(exc) and attempt < retries:
                    # Nothing was committed: the attempt rolled back as a whole. Back off with
                    # jitter so the competing transactions do not collide again in step.
                    delay = min(0.5, 0.02 * 2**attempt) * (0.5 + random.random())  # noqa: S311
                    await asyncio.sleep(delay)
                    continue
                if is_busy(exc):
                    raise DatabaseBusy(short_reason(exc)) from exc
                if is_unreachable(exc):
                    raise DatabaseUnavailable(short_reason(exc)) from exc
                if sqlstate(exc).startswith("22"):
                    raise InvalidData(short_reason(exc)) from exc
                raise
            except (OSError, ConnectionError) as exc:
                raise DatabaseUnavailable(short_reason(exc)) from exc
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _attempt(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], *, write: bool
    ) -> T:
        if self._async_engine is not None:
            await self._connection_turn()
            try:
                return await self._attempt_postgres(fn, args, kwargs, write=write)
            finally:
                self._connections.release()
        if write:
            return await self._group_commit.run(fn, args, kwargs)
        assert self._reader is not None
        if is_quick_read(fn):
            return self._quick_read(fn, args, kwargs)
        loop = asyncio.get_running_loop()
        call = functools.partial(_in_transaction, self._reader, fn, args, kwargs)
        return await loop.run_in_executor(self._read_executor, call)

    async def _connection_turn(self) -> None:
        """Wait, first come first served, until one of the pool's connections is this unit's.

        SQLAlchemy's asyncio pool gives a returned connection to whoever asks next, ahead of
        the requests already waiting (and a task that asks again at once keeps it), so with
        more requests than connections some waited far longer than the rest. The semaphore,
        as large as the pool, queues them in order; the pool itself then never makes one wait.
        """
        if not self._connections.locked():
            await self._connections.acquire()  # a free one: taken without waiting
            return
        try:
            async with asyncio.timeout(self.settings.db_pool_timeout_ms / 1000):
                await self._connections.acquire()
        except TimeoutError:
            raise DatabaseBusy(
                f"no database connection came free in {self.settings.db_pool_timeout_ms} ms"
            ) from None

    async def _attempt_postgres(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], *, write: bool
    ) -> T:
        assert self._async_engine is not None
        if is_hot(fn):
            autocommit = not write or owns_transaction(fn)
            return await greenlet_spawn(self._on_driver, fn, args, kwargs, autocommit)
        if not write and is_quick_read(fn):
            async with self._pg_reader.connect() as conn:
                return await conn.run_sync(fn, *args, **kwargs)
        async with self._async_engine.begin() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

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
            with invalidating(conn):
                return fn(conn, *args, **kwargs)
        finally:
            if conn.in_transaction():
                conn.rollback()

    async def ping(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the schema can be queried."""
        await self.read(_ping)

    async def dispose(self) -> None:
        """Let running writes finish, then close every pooled connection and worker thread."""
        if self._writes or self._batches:
            await asyncio.wait(self._writes | self._batches)
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


def _in_transaction(
    engine: Engine, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    with engine.connect() as conn, invalidating(conn), conn.begin():
        return fn(conn, *args, **kwargs)


def _ping(conn: Connection) -> None:
    conn.exec_driver_sql("SELECT 1 FROM alembic_version")
