""":class:`Database`: runs units of work in the execution mode each call site names."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from negotiation.db.coalesce import Coalescer
from negotiation.db.engines import normalize_url
from negotiation.db.errors import (
    DatabaseBusy,
    DatabaseUnavailable,
    InvalidData,
    is_busy,
    is_retryable,
    is_unreachable,
    short_reason,
    sqlstate,
)
from negotiation.db.postgres import PostgresBackend
from negotiation.db.sqlite import SQLiteBackend
from negotiation.metrics import DB_RETRIES
from negotiation.settings import Settings

T = TypeVar("T")
Attempt = Callable[[Callable[..., T], tuple[Any, ...], dict[str, Any]], Awaitable[T]]

logger = logging.getLogger("negotiation.db")

#: Most items one shared unit (Database.read_shared, write_shared) answers; more wait for the
#: next one.
SHARED_BATCH_MAX = 64


class Database:
    """Runs units of work (functions over a Core ``Connection``) on the configured database.

    Each method is an execution mode (the table in :mod:`negotiation.db`); ``fn`` is called as
    ``fn(conn, *args, **kwargs)`` and its result returned. Every mode retries and classifies
    failures the same way (:meth:`_run`).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = normalize_url(settings.database_url, asynchronous=False)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._backend: SQLiteBackend | PostgresBackend = (
            SQLiteBackend(self.url, settings)
            if self.is_sqlite
            else PostgresBackend(normalize_url(settings.database_url, asynchronous=True), settings)
        )
        #: Writes still running (possibly for a request that has gone); awaited by dispose().
        self._writes: set[asyncio.Task[Any]] = set()
        #: Shared units in flight (read_shared, write_shared), also awaited by dispose().
        self._batches: set[asyncio.Task[Any]] = set()
        self._coalescers: dict[Callable[..., Any], Coalescer[Any, Any]] = {}

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "sqlite" if self.is_sqlite else "postgresql"

    async def read(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Any reads, in one read-only transaction that sees one snapshot of the data."""
        return await self._run(self._backend.read, fn, args, kwargs, write=False)

    async def read_quick(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """A few index lookups returning at most a page of rows, without a transaction: each
        statement sees the data committed when it starts."""
        return await self._run(self._backend.read_quick, fn, args, kwargs, write=False)

    async def read_hot(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Hot statements only (:mod:`negotiation.db.statements`), without a transaction: each
        sees the data committed when it starts."""
        return await self._run(self._backend.read_hot, fn, args, kwargs, write=False)

    async def read_shared(self, fn: Callable[[Any, list[Any]], list[T]], item: Any, /) -> T:
        """``fn(conn, [item])[0]``, ``fn`` a hot read answering one page per item, in order.

        On PostgreSQL the items asked for at the same time go to one call of ``fn``
        (:class:`~negotiation.db.coalesce.Coalescer`): one round trip for all of them, which
        starts after every one of them was asked for. SQLite has no round trip to save: each
        item runs on its own. An error fails every item of its call, so items must already be
        valid for the database (ids in range, and so on).
        """
        if self.is_sqlite:
            return (await self._read_pages(fn, [item]))[0]
        return await self._shared(self._backend.read_shared, fn, item, write=False)

    async def write_shared(self, fn: Callable[[Any, list[Any]], list[T]], item: Any, /) -> T:
        """PostgreSQL only: as :meth:`read_shared`, for a unit of hot statements that may write,
        each committed on its own (autocommit: no transaction around them), so ``fn`` must keep
        every item's writes to one atomic statement, or give up on the item. It is a write:
        run to its end even if every caller has gone, and not run again after a connection
        was lost (its statement may have committed). (The rounds' path:
        :func:`negotiation.recording.record_offer`.)
        """
        if not isinstance(self._backend, PostgresBackend):
            raise TypeError("write_shared is for PostgreSQL: SQLite's writer already batches")
        return await self._shared(self._backend.write_shared, fn, item, write=True)

    async def _shared(
        self,
        attempt: Attempt[list[T]],
        fn: Callable[[Any, list[Any]], list[T]],
        item: Any,
        *,
        write: bool,
    ) -> T:
        coalescer = self._coalescers.get(fn)
        if coalescer is None:
            coalescer = self._coalescers[fn] = Coalescer(
                lambda items: self._run(attempt, fn, (items,), {}, write=write),
                # A quarter of the pool per kind of unit: the rest stays free for the others.
                slots=max(1, self.settings.db_pool_size // 4),
                max_batch=SHARED_BATCH_MAX,
                tasks=self._batches,
            )
        result: T = await coalescer(item)
        return result

    async def _read_pages(
        self, fn: Callable[[Any, list[Any]], list[T]], items: list[Any]
    ) -> list[T]:
        return await self._run(self._backend.read_shared, fn, (items,), {}, write=False)

    async def write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Any statements in one write transaction: all or nothing, committed before returning.

        An exception raised by ``fn`` rolls the whole transaction back. The write is shielded:
        if the caller is cancelled (the client went away), the transaction still runs to its
        commit or rollback, so it is never left half-done by the cancellation.
        """
        return await self._shielded(self._run(self._backend.write, fn, args, kwargs, write=True))

    async def write_hot(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        first_try: Callable[..., T | None] | None = None,
        **kwargs: Any,
    ) -> T:
        """As :meth:`write`, with hot statements only.

        ``first_try`` (PostgreSQL only) is tried first with the same arguments on the same
        connection, outside a transaction, and its result, unless None, is the unit's: it must
        write with one statement at most (atomic on its own) and return None when it wrote
        nothing. SQLite has no use for it: its write transaction excludes every other writer
        from its BEGIN. (The round's path: :mod:`negotiation.recording`.)
        """
        attempt = functools.partial(self._backend.write_hot, first_try=first_try)
        return await self._shielded(self._run(attempt, fn, args, kwargs, write=True))

    async def _shielded(self, write: Awaitable[T]) -> T:
        task = asyncio.ensure_future(write)
        self._writes.add(task)
        task.add_done_callback(self._write_finished)
        return await asyncio.shield(task)

    def _write_finished(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Retrieved here too, so a write whose caller was cancelled logs no "never retrieved".
            logger.debug("write ended with %r", task.exception())

    async def _run(
        self,
        attempt: Attempt[T],
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        write: bool,
    ) -> T:
        """Attempt the unit; a lock held too long, a serialization failure, a deadlock or a
        unique violation rolls the attempt back and runs it again, at most ``db_retries`` more
        times, then raises ``DatabaseBusy`` (docs/RELIABILITY.md)."""
        retries = self.settings.db_retries
        for attempt_number in range(retries + 1):
            if attempt_number:
                DB_RETRIES.inc()
            try:
                return await attempt(fn, args, kwargs)
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    await self._backend.connection_lost()
                    # A read runs again at once; a write answers 503, to be retried.
                    if not write and attempt_number == 0 and not self.is_sqlite:
                        continue
                if is_retryable(exc) and attempt_number < retries:
                    # Nothing was committed: the attempt rolled back as a whole. Back off with
                    # jitter so the competing transactions do not collide again in step.
                    delay = min(0.5, 0.02 * 2**attempt_number) * (0.5 + random.random())  # noqa: S311
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

    async def ping(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the schema can be queried."""
        await self.read(_ping)

    async def dispose(self) -> None:
        """Let running writes finish, then close every pooled connection and worker thread."""
        if self._writes or self._batches:
            await asyncio.wait(self._writes | self._batches)
        await self._backend.dispose()


def _ping(conn: Connection) -> None:
    conn.exec_driver_sql("SELECT 1 FROM alembic_version")
