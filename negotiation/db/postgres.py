"""Where each execution mode runs on PostgreSQL (see :mod:`negotiation.db`).

One ``asyncpg`` engine, no threads: units run through ``AsyncConnection.run_sync``, or, in the
hot modes, on the pooled driver connection with no SQLAlchemy ``Connection`` around it (its
checkout, ``run_sync`` and transaction bookkeeping cost more than a round listing's
statements). Every attempt first takes a turn at the pool (:meth:`PostgresBackend._turn`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import PoolProxiedConnection

# SQLAlchemy's bridge from asyncio to synchronous code, as AsyncConnection.run_sync uses it.
from sqlalchemy.util.concurrency import greenlet_spawn

from negotiation.db.errors import DatabaseBusy
from negotiation.db.statements import DriverConnection
from negotiation.settings import Settings

T = TypeVar("T")
Args = tuple[Any, ...]
Kwargs = dict[str, Any]


class PostgresBackend:
    """One attempt of a unit of work in each mode, on a PostgreSQL database."""

    def __init__(self, url: URL, settings: Settings) -> None:
        self._settings = settings
        self.engine = create_async_engine(
            url,
            pool_size=settings.db_pool_size,
            # No overflow: an overflow connection is closed as soon as it is returned, so
            # under sustained load above the pool size every request opened a connection
            # (p99 590 ms). Requests past the pool size wait for a pooled one instead.
            max_overflow=0,
            # No ping per checkout; a dead connection is noticed by its first statement
            # (a read is then run again, see Database._run; a write answers 503, to be retried).
            pool_pre_ping=False,
            pool_recycle=1800,
            # A row lock held elsewhere fails the statement after this long (then retried).
            connect_args={"server_settings": {"lock_timeout": str(settings.lock_timeout_ms)}},
        )
        #: Reads see one snapshot, as a SQLite read transaction does, and cannot write.
        self._snapshot = self.engine.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        #: Each statement on its own, seeing what was committed when it started.
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        #: Turns at the pool's connections, in the order they were asked for.
        self._connections = asyncio.Semaphore(settings.db_pool_size)

    async def read(self, fn: Callable[..., T], args: Args, kwargs: Kwargs) -> T:
        """A read-only REPEATABLE READ transaction."""

        async def attempt() -> T:
            async with self._snapshot.begin() as conn:
                return await conn.run_sync(fn, *args, **kwargs)

        return await self._turn(attempt)

    async def read_quick(self, fn: Callable[..., T], args: Args, kwargs: Kwargs) -> T:
        """Autocommit: no BEGIN and COMMIT (two round trips)."""

        async def attempt() -> T:
            async with self._autocommit.connect() as conn:
                return await conn.run_sync(fn, *args, **kwargs)

        return await self._turn(attempt)

    async def read_hot(self, fn: Callable[..., T], args: Args, kwargs: Kwargs) -> T:
        """The driver connection, in autocommit."""
        return await self._turn(lambda: greenlet_spawn(self._on_driver, fn, args, kwargs))

    read_shared = read_hot

    async def write_shared(self, fn: Callable[..., T], args: Args, kwargs: Kwargs) -> T:
        """The driver connection, in autocommit: each statement commits on its own."""
        return await self._turn(lambda: greenlet_spawn(self._on_driver, fn, args, kwargs))

    async def write(self, fn: Callable[..., T], args: Args, kwargs: Kwargs) -> T:
        """A READ COMMITTED transaction; the unit locks the rows its decisions read."""

        async def attempt() -> T:
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn, *args, **kwargs)

        return await self._turn(attempt)

    async def write_hot(
        self, fn: Callable[..., T], args: Args, kwargs: Kwargs, first_try: Callable[..., Any] | None
    ) -> T:
        """The driver connection in a transaction; ``first_try`` before it, in autocommit."""
        return await self._turn(
            lambda: greenlet_spawn(self._on_driver, fn, args, kwargs, first_try, write=True)
        )

    async def connection_lost(self) -> None:
        """A pooled connection died while idle (the server restarted, or cut it): connections
        are not pinged before each checkout, which cost three round trips per request. The
        other idle ones are suspect too: replace the pool."""
        await self.engine.dispose()

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def _turn(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` once one of the pool's connections is its turn, first come first served.

        SQLAlchemy's asyncio pool gives a returned connection to whoever asks next, ahead of
        the requests already waiting (and a task that asks again at once keeps it), so with
        more requests than connections some waited far longer than the rest. The semaphore,
        as large as the pool, queues them in order; the pool itself then never makes one wait.
        """
        if not self._connections.locked():
            await self._connections.acquire()  # a free one: taken without waiting
        else:
            timeout_ms = self._settings.db_pool_timeout_ms
            try:
                async with asyncio.timeout(timeout_ms / 1000):
                    await self._connections.acquire()
            except TimeoutError:
                raise DatabaseBusy(f"no database connection came free in {timeout_ms} ms") from None
        try:
            return await attempt()
        finally:
            self._connections.release()

    def _on_driver(
        self,
        fn: Callable[..., T],
        args: Args,
        kwargs: Kwargs,
        first_try: Callable[..., Any] | None = None,
        *,
        write: bool = False,
    ) -> T:
        # In a greenlet (greenlet_spawn), as AsyncConnection.run_sync runs a unit: the asyncpg
        # adapter awaits the driver from this synchronous code.
        fairy = self._checkout()
        adapted: Any = fairy.dbapi_connection
        conn = DriverConnection(fairy, self.engine.sync_engine)
        try:
            # Autocommit: no BEGIN, each statement commits on its own.
            adapted.autocommit = not write or first_try is not None
            if first_try is not None:
                result = first_try(conn, *args, **kwargs)
                if result is not None:
                    return result  # type: ignore[no-any-return]
                adapted.autocommit = False
            if not write:
                return fn(conn, *args, **kwargs)
            # The first statement begins the transaction, committed here.
            result = fn(conn, *args, **kwargs)
            conn.commit()
            return result
        finally:
            if fairy.is_valid:
                adapted.autocommit = False
            fairy.close()  # back to the pool, which rolls back a transaction left open

    def _checkout(self) -> PoolProxiedConnection:
        engine = self.engine.sync_engine
        try:
            return engine.raw_connection()
        except engine.dialect.loaded_dbapi.Error as exc:  # as Engine.connect() would raise it
            raise DBAPIError.instance(
                None,
                None,
                exc,
                engine.dialect.loaded_dbapi.Error,
                connection_invalidated=engine.dialect.is_disconnect(exc, None, None),
                dialect=engine.dialect,
            ) from exc
