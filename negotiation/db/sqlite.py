"""Where each execution mode runs on SQLite (see :mod:`negotiation.db`).

The standard ``sqlite3`` driver (the aiosqlite path costs a thread hop per statement and
measured about 7x slower here). Writes go through one writer connection, one transaction at a
time (:class:`~negotiation.db.sqlite_writer.GroupCommit`). Reads that may scan run on a pool of
reader threads, where SQLite's C code runs without the GIL. Quick and hot reads run on the
event loop's thread, on one connection the loop keeps: handing a read to a thread and back
(submit, wake-ups, GIL hand-offs) cost more than the query, and a reader in WAL mode never waits
for writers, so the loop is held only for the unit's own work.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from negotiation.db.engines import sqlite_engine
from negotiation.db.errors import invalidating, is_unreachable
from negotiation.db.sqlite_writer import GroupCommit, writer_lock_path
from negotiation.db.statements import DriverConnection
from negotiation.settings import Settings

T = TypeVar("T")
Args = tuple[Any, ...]
Kwargs = dict[str, Any]


class SQLiteBackend:
    """One attempt of a unit of work in each mode, on a SQLite file."""

    def __init__(self, url: URL, settings: Settings) -> None:
        readers = settings.db_pool_size
        # One connection more than reader threads: the loop's own, which it keeps.
        self._reader = sqlite_engine(url, settings, writer=False, pool_size=readers + 1)
        self._writer = sqlite_engine(url, settings, writer=True, pool_size=1)
        self._read_executor = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._write_executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._group_commit = GroupCommit(
            self._writer,
            self._write_executor,
            writer_lock_path(url),
            settings.sqlite_busy_timeout_ms,
        )
        self._loop_reader: Connection | None = None
        self._loop_driver: DriverConnection | None = None

    async def read(self, fn: Callable[..., T], args: Args, kwargs: Kwargs) -> T:
        """A reader thread, in one transaction (a WAL snapshot from its first read)."""
        call = functools.partial(_in_transaction, self._reader, fn, args, kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._read_executor, call)

    async def read_quick(self, fn: Callable[..., T], args: Args, kwargs: Kwargs) -> T:
        """The loop's thread, on the loop's reader connection."""
        return self._on_loop(fn, args, kwargs, hot=False)

    async def read_hot(self, fn: Callable[..., T], args: Args, kwargs: Kwargs) -> T:
        """A reader thread, on the driver connection, each statement on its own."""
        call = functools.partial(_on_driver, self._reader, fn, args, kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._read_executor, call)

    async def read_shared(self, fn: Callable[..., T], args: Args, kwargs: Kwargs) -> T:
        """A page of a listing: the loop's thread, on the driver connection."""
        return self._on_loop(fn, args, kwargs, hot=True)

    async def write(self, fn: Callable[..., T], args: Args, kwargs: Kwargs) -> T:
        """The writer thread, in the writer's next transaction."""
        return await self._group_commit.run(fn, args, kwargs, hot=False)

    async def write_hot(
        self, fn: Callable[..., T], args: Args, kwargs: Kwargs, first_try: Callable[..., Any] | None
    ) -> T:
        """The loop's thread, in the writer's next transaction (``first_try`` is not needed:
        the transaction holds the database's write lock from its BEGIN)."""
        return await self._group_commit.run(fn, args, kwargs, hot=True)

    async def connection_lost(self) -> None:
        """Nothing to do: the connection that failed was invalidated by its unit."""

    def _on_loop(self, fn: Callable[..., T], args: Args, kwargs: Kwargs, *, hot: bool) -> T:
        # One connection for every read on the loop's thread: they run one at a time and to
        # completion, so they never share it concurrently. A checkout and return per read cost
        # a tenth of a session read. No transaction is begun by the hot ones; one that a
        # statement began implicitly is ended here, so no snapshot is held between reads.
        conn, driver = self._loop_reader, self._loop_driver
        if conn is None or driver is None:
            conn = self._loop_reader = self._reader.connect()
            driver = self._loop_driver = DriverConnection(conn.connection, self._reader)
        try:
            return fn(driver if hot else conn, *args, **kwargs)
        except DBAPIError as exc:
            if is_unreachable(exc):  # after an I/O error the next read opens the file anew
                self._loop_reader = self._loop_driver = None
                conn.invalidate()
            raise
        finally:
            if conn.in_transaction():
                conn.rollback()
            if self._loop_reader is not conn:
                conn.close()

    async def dispose(self) -> None:
        """Close every connection and worker thread (running writes have finished)."""
        if self._loop_reader is not None:
            self._loop_reader.close()
            self._loop_reader = self._loop_driver = None
        for engine in (self._reader, self._writer):
            engine.dispose()
        for executor in (self._read_executor, self._write_executor):
            executor.shutdown(wait=True)
        self._group_commit.close()


def _in_transaction(engine: Engine, fn: Callable[..., T], args: Args, kwargs: Kwargs) -> T:
    with engine.connect() as conn, invalidating(conn), conn.begin():
        return fn(conn, *args, **kwargs)


def _on_driver(engine: Engine, fn: Callable[..., T], args: Args, kwargs: Kwargs) -> T:
    with engine.connect() as conn, invalidating(conn):
        return fn(DriverConnection(conn.connection, engine), *args, **kwargs)
