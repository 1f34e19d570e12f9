"""Units of work: each write commits or rolls back alone, also when SQLite commits several
together; quick reads skip the worker thread on SQLite; hot units run on the bare driver
connection on PostgreSQL and leave it as they found it."""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import os
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, insert, select

from negotiation.db import Database
from negotiation.db_errors import DatabaseBusy
from negotiation.errors import ApiError
from negotiation.queries import loads
from negotiation.settings import Settings
from negotiation.statements import DriverConnection, HotStatement
from negotiation.units import hot_unit, own_transaction, quick_read
from tests import dbutil
from tests.helpers import hold_a_connection, with_settings

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _load(load_id: str) -> dict[str, object]:
    return {
        "load_id": load_id,
        "origin": "A",
        "destination": "B",
        "pickup_datetime": NOW,
        "delivery_datetime": NOW,
        "equipment_type": "Dry Van",
        "loadboard_rate": Decimal("1000.00"),
    }


def _add_load(conn: Connection, load_id: str, *, fail: bool = False) -> str:
    conn.execute(insert(loads).values(_load(load_id)))
    if fail:
        raise ApiError(409, "LOAD_EXISTS", "refused after writing")
    return load_id


def _load_ids(conn: Connection) -> list[str]:
    return list(conn.execute(select(loads.c.load_id).order_by(loads.c.load_id)).scalars())


async def test_queued_writes_keep_their_own_outcome(settings: Settings) -> None:
    db = Database(settings)
    release = threading.Event()

    def _first(conn: Connection) -> str:
        # Holds SQLite's writer thread until every other unit is queued, so they are batched.
        # (On PostgreSQL a unit runs in a greenlet on the event loop's thread: no waiting there.)
        if conn.dialect.name == "sqlite":
            release.wait(10)
        return _add_load(conn, "L000")

    try:
        first = asyncio.create_task(db.write(_first))
        others = [
            asyncio.create_task(db.write(_add_load, f"L{i:03d}", fail=i % 3 == 0))
            for i in range(1, 21)
        ]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(first, *others, return_exceptions=True)
        stored = await db.read(_load_ids)
        count = await db.read(lambda c: c.execute(select(func.count()).select_from(loads)).scalar())
    finally:
        await db.dispose()

    expected = ["L000"] + [f"L{i:03d}" for i in range(1, 21) if i % 3]
    assert [r for r in results if isinstance(r, str)] == expected
    failures = [r for r in results if not isinstance(r, str)]
    assert len(failures) == 6 and all(isinstance(f, ApiError) for f in failures)
    assert stored == expected and count == len(expected)


async def test_a_failed_unit_alone_leaves_nothing(settings: Settings) -> None:
    db = Database(settings)
    try:
        with pytest.raises(ApiError):
            await db.write(_add_load, "L1", fail=True)
        assert await db.read(_load_ids) == []
    finally:
        await db.dispose()


_INSERT_LOAD = HotStatement(insert(loads), column_keys=list(_load("")))
_LOAD_COUNT = HotStatement(select(func.count().label("n")).select_from(loads))


@hot_unit
def _hot_add_load(conn: Connection, load_id: str, *, fail: bool = False) -> type:
    _INSERT_LOAD.run(conn, _load(load_id))
    if fail:
        raise ApiError(409, "LOAD_EXISTS", "refused after writing")
    return type(conn)


@hot_unit
def _hot_count(conn: Connection) -> tuple[type, int]:
    counted = _LOAD_COUNT.first(conn)
    assert counted is not None
    return type(conn), counted.n


@hot_unit
def _hot_but_not_hot(conn: Connection) -> int:
    return len(conn.execute(select(loads.c.load_id)).all())


async def test_hot_units_commit_or_leave_nothing_and_leave_the_connection_clean(
    settings: Settings,
) -> None:
    """One pooled connection serves every unit in turn, hot or not, read or write."""
    db = Database(with_settings(settings, db_pool_size=1))
    driver_kind = Connection if db.is_sqlite else DriverConnection
    try:
        assert await db.write(_hot_add_load, "L1") is driver_kind
        with pytest.raises(ApiError):
            await db.write(_hot_add_load, "L2", fail=True)  # written, then rolled back
        assert await db.read(_hot_count) == (driver_kind, 1)
        # After a hot read (no transaction on PostgreSQL) a plain write is transactional again.
        with pytest.raises(ApiError):
            await db.write(_add_load, "L3", fail=True)
        assert await db.read(_load_ids) == ["L1"]
        assert await db.write(_hot_add_load, "L4") is driver_kind
        assert await db.read(_load_ids) == ["L1", "L4"]
    finally:
        await db.dispose()


@hot_unit
@own_transaction
def _add_loads_in_turn(conn: Connection, first: str, second: str) -> None:
    """The first load alone, then a transaction (PostgreSQL); then a refusal."""
    _INSERT_LOAD.run(conn, _load(first))
    if isinstance(conn, DriverConnection):
        conn.begin()
    _INSERT_LOAD.run(conn, _load(second))
    raise ApiError(409, "LOAD_EXISTS", "refused after writing")


async def test_an_own_transaction_unit_commits_each_statement_until_it_begins(
    settings: Settings,
) -> None:
    """On PostgreSQL its first statement commits on its own and what follows ``begin()`` rolls
    back with the refusal; elsewhere the whole unit is one transaction. Either way the pooled
    connection is transactional again for the next unit."""
    db = Database(with_settings(settings, db_pool_size=1))
    try:
        with pytest.raises(ApiError):
            await db.write(_add_loads_in_turn, "L1", "L2")
        assert await db.read(_load_ids) == ([] if db.is_sqlite else ["L1"])
        with pytest.raises(ApiError):
            await db.write(_hot_add_load, "L3", fail=True)
        with pytest.raises(ApiError):
            await db.write(_add_load, "L4", fail=True)
        assert await db.read(_load_ids) == ([] if db.is_sqlite else ["L1"])
    finally:
        await db.dispose()


async def test_a_hot_unit_cannot_run_a_statement_that_is_not_hot(settings: Settings) -> None:
    db = Database(settings)
    try:
        if db.is_sqlite:  # an ordinary unit there
            assert await db.read(_hot_but_not_hot) == 0
        else:
            with pytest.raises(TypeError, match="HotStatements only"):
                await db.read(_hot_but_not_hot)
    finally:
        await db.dispose()


@hot_unit
def _count_as(conn: Connection, name: str, turns: list[str]) -> int:
    turns.append(name)
    counted = _LOAD_COUNT.first(conn)
    assert counted is not None
    return int(counted.n)


@pytest.mark.postgres
async def test_postgres_units_get_connections_in_the_order_they_asked(postgres_url: str) -> None:
    """With one connection and three requesters that each ask again as soon as they are
    answered, each waits its turn: none keeps the connection by asking first again."""
    db = Database(Settings(database_url=postgres_url, db_pool_size=1))
    turns: list[str] = []

    async def requester(name: str) -> None:
        for _ in range(4):
            await db.read(_count_as, name, turns)

    try:
        await asyncio.gather(*(requester(name) for name in "abc"))
    finally:
        await db.dispose()
    assert turns == list("abc") * 4


@pytest.mark.postgres
async def test_a_postgres_unit_with_no_connection_free_in_time_is_busy(postgres_url: str) -> None:
    db = Database(Settings(database_url=postgres_url, db_pool_size=1, db_pool_timeout_ms=100))
    held = threading.Event()
    holder = asyncio.ensure_future(db.read(hold_a_connection, held))
    try:
        await asyncio.to_thread(held.wait, 10)
        with pytest.raises(DatabaseBusy, match="no database connection came free in 100 ms"):
            await db.read(_count_as, "late", [])
        await holder
        assert await db.read(_count_as, "after", []) == 0  # the connection is free again
    finally:
        holder.cancel()
        await db.dispose()


@quick_read
def _quick_thread(conn: Connection) -> int:
    conn.execute(select(func.count()).select_from(loads))
    return threading.get_ident()


def _threaded(conn: Connection) -> int:
    conn.execute(select(func.count()).select_from(loads))
    return threading.get_ident()


@hot_unit
def _hot_thread(conn: Connection) -> int:
    _LOAD_COUNT.first(conn)
    return threading.get_ident()


async def test_sqlite_runs_quick_reads_and_hot_writes_on_the_loop_thread(
    settings: Settings,
) -> None:
    """On SQLite, quick reads and hot write units run on the event loop's thread (a hot
    write's BEGIN and COMMIT, which may wait, on the writer thread); other units, which may
    scan or delete many rows, in a reader or the writer thread. asyncpg runs all on the loop."""
    db = Database(settings)
    try:
        quick, threaded = await db.read(_quick_thread), await db.read(_threaded)
        hot_write, plain_write = await db.write(_hot_thread), await db.write(_threaded)
    finally:
        await db.dispose()
    loop_thread = threading.get_ident()
    assert quick == hot_write == loop_thread
    if db.is_sqlite:
        assert threaded != loop_thread and plain_write != loop_thread
    else:
        assert threaded == plain_write == loop_thread


async def test_sqlite_writers_of_several_processes_take_turns_on_the_lock_file(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """A write waits while another process holds ``<file>-writer.lock``, then goes through."""
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "loads.db")
    db = Database(Settings(database_url=url))
    lock_path = f"{tmp_path / 'loads.db'}-writer.lock"
    held = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another worker process would, mid-transaction
        write = asyncio.create_task(db.write(_add_load, "LOCKED"))
        await asyncio.sleep(0.3)
        assert not write.done()
        fcntl.flock(held, fcntl.LOCK_UN)
        assert await asyncio.wait_for(write, 5) == "LOCKED"
        assert await db.read(_load_ids) == ["LOCKED"]
    finally:
        os.close(held)
        await db.dispose()


_UNIT_MAY_END = threading.Event()


def _add_load_slowly(conn: Connection, load_id: str) -> str:
    """A plain unit (writer thread) that writes, then waits for the test."""
    _add_load(conn, load_id)
    assert _UNIT_MAY_END.wait(5)
    return load_id


@pytest.mark.parametrize("left_while", ["waiting for the lock file", "a unit runs"])
def test_a_write_left_behind_at_shutdown_does_not_keep_the_lock_file(
    sqlite_template: Path, tmp_path: Path, left_while: str
) -> None:
    """The event loop ends while the writer thread waits for ``<file>-writer.lock`` to begin a
    write, or while it runs a unit: the transaction is rolled back on the writer thread once
    it gets there and the lock released, not held for the rest of the process's life (the
    other worker processes would wait on it)."""
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "loads.db")
    db = Database(Settings(database_url=url))
    held = os.open(f"{tmp_path / 'loads.db'}-writer.lock", os.O_RDWR | os.O_CREAT)
    _UNIT_MAY_END.clear()
    try:
        if left_while == "waiting for the lock file":
            fcntl.flock(held, fcntl.LOCK_EX)

        async def write_and_leave() -> asyncio.Task[str]:
            write = asyncio.ensure_future(db.write(_add_load_slowly, "LEFT"))
            await asyncio.sleep(0.2)  # the writer thread is waiting for the lock, or the test
            return write

        write = asyncio.run(write_and_leave())  # cancels the pending write on its way out
        assert write.cancelled()
        if left_while == "a unit runs":
            # Its transaction is still open on the writer thread: the lock file stays with it
            # (let go now, another process would begin while this one still writes).
            with pytest.raises(BlockingIOError):
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(held, fcntl.LOCK_UN)
        _UNIT_MAY_END.set()
        for _ in range(250):  # the writer thread goes on, rolls back and lets go
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.02)
        else:
            pytest.fail("the lock file stayed held after the loop ended")
        fcntl.flock(held, fcntl.LOCK_UN)
        assert asyncio.run(db.read(_load_ids)) == []
    finally:
        _UNIT_MAY_END.set()
        os.close(held)
        asyncio.run(db.dispose())
