"""The execution modes of ``Database``: each write commits or rolls back alone, also when SQLite
commits several together; hot modes run on the bare driver connection and refuse anything
else, on both databases; reads cannot write; where each mode runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import functools
import os
import sqlite3
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Connection, event, func, insert, select
from sqlalchemy.exc import DBAPIError

from negotiation.db import Conn, Database, DatabaseBusy, DatabaseUnavailable, DriverConnection
from negotiation.db.statements import HotStatement
from negotiation.errors import ApiError
from negotiation.queries import loads
from negotiation.settings import Settings
from tests import dbutil
from tests.helpers import hold_until_unlocked, with_settings
from tests.waiting import wait_until, wait_until_sync

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
#: The advisory lock a unit waits on to keep its connection until the test lets go.
HOLD = 41_001


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
        if db.is_sqlite:  # every unit was taken by the writer, which waits in the first

            def taken() -> bool:
                queue = db._backend._group_commit._pending  # type: ignore[union-attr]
                return len(db._writes) == 21 and not queue

            await _until(taken, "every unit taken by the writer")
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


def _hot_add_load(conn: Conn, load_id: str, *, fail: bool = False) -> type:
    _INSERT_LOAD.run(conn, _load(load_id))
    if fail:
        raise ApiError(409, "LOAD_EXISTS", "refused after writing")
    return type(conn)


def _hot_count(conn: Conn) -> tuple[type, int]:
    counted = _LOAD_COUNT.first(conn)
    assert counted is not None
    return type(conn), counted.n


def _hot_counts(conn: Conn, items: list[str]) -> list[tuple[type, int]]:
    return [_hot_count(conn) for _ in items]


def _not_hot(conn: Conn, *_: object) -> list[int]:
    return [len(conn.execute(select(loads.c.load_id)).all())]


async def test_hot_units_commit_or_leave_nothing_and_leave_the_connection_clean(
    settings: Settings,
) -> None:
    """One pooled connection serves every unit in turn, hot or not, read or write."""
    db = Database(with_settings(settings, db_pool_size=1))
    try:
        assert await db.write_hot(_hot_add_load, "L1") is DriverConnection
        with pytest.raises(ApiError):
            await db.write_hot(_hot_add_load, "L2", fail=True)  # written, then rolled back
        assert await db.read_hot(_hot_count) == (DriverConnection, 1)
        assert await db.read_shared(_hot_counts, "x") == (DriverConnection, 1)
        # After a hot read (no transaction) a plain write is transactional again.
        with pytest.raises(ApiError):
            await db.write(_add_load, "L3", fail=True)
        assert await db.read(_load_ids) == ["L1"]
        assert await db.write_hot(_hot_add_load, "L4") is DriverConnection
        assert await db.read_quick(_load_ids) == ["L1", "L4"]
    finally:
        await db.dispose()


async def test_every_hot_mode_refuses_a_statement_that_is_not_hot(settings: Settings) -> None:
    """On both databases: a unit that is not hot fails at once, and writes nothing."""
    db = Database(settings)
    try:
        for run in (db.read_hot(_not_hot), db.write_hot(_not_hot), db.read_shared(_not_hot, "x")):
            with pytest.raises(TypeError, match="HotStatements only"):
                await run
        assert await db.read(_load_ids) == []
    finally:
        await db.dispose()


async def test_a_read_cannot_write(settings: Settings) -> None:
    """SQLite's reader connections are ``query_only``; PostgreSQL's read transaction is READ
    ONLY: a read unit that writes fails, and nothing is stored."""
    db = Database(settings)
    try:
        with pytest.raises((DatabaseUnavailable, DBAPIError), match=r"read-?only"):
            await db.read(_add_load, "L1")
        if db.is_sqlite:  # PostgreSQL's autocommit quick reads do not check
            with pytest.raises(DatabaseUnavailable, match="readonly"):
                await db.read_quick(_add_load, "L2")
        assert await db.read(_load_ids) == []
        assert await db.read_quick(_load_ids) == []  # the quick reads' connection still works
    finally:
        await db.dispose()


def _first_try(
    conn: Conn, load_id: str, *, tries: list[str], answer: bool, fail: bool = False
) -> str | None:
    tries.append(load_id)
    if answer:
        _INSERT_LOAD.run(conn, _load(load_id))  # one statement: atomic on its own
        return f"first try: {load_id}"
    return None


async def test_a_first_try_answers_alone_or_leaves_the_unit_to_its_transaction(
    settings: Settings,
) -> None:
    """PostgreSQL runs ``first_try`` outside the transaction: its answer is the unit's, or,
    when it has none, the unit runs in a transaction that a refusal rolls back whole. SQLite
    never needs it: the unit runs in its write transaction."""
    db = Database(with_settings(settings, db_pool_size=1))
    tries: list[str] = []
    try:
        first = functools.partial(_first_try, tries=tries, answer=True)
        answered = await db.write_hot(_hot_add_load, "L1", first_try=first)
        no_answer = functools.partial(_first_try, tries=tries, answer=False)
        with pytest.raises(ApiError):
            await db.write_hot(_hot_add_load, "L2", fail=True, first_try=no_answer)
        assert await db.write_hot(_hot_add_load, "L3", first_try=no_answer) is DriverConnection
        stored = await db.read(_load_ids)
    finally:
        await db.dispose()
    if db.is_sqlite:
        assert (answered, tries, stored) == (DriverConnection, [], ["L1", "L3"])
    else:
        assert (answered, tries, stored) == ("first try: L1", ["L1", "L2", "L3"], ["L1", "L3"])


def _count_as(conn: Conn, name: str, turns: list[str]) -> int:
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
            await db.read_hot(_count_as, name, turns)

    try:
        await asyncio.gather(*(requester(name) for name in "abc"))
    finally:
        await db.dispose()
    assert turns == list("abc") * 4


@pytest.mark.postgres
async def test_a_postgres_unit_with_no_connection_free_in_time_is_busy(postgres_url: str) -> None:
    db = Database(Settings(database_url=postgres_url, db_pool_size=1, db_pool_timeout_ms=100))
    held = threading.Event()
    try:
        async with dbutil.advisory_lock(postgres_url, HOLD):
            holder = asyncio.ensure_future(db.read(hold_until_unlocked, held, HOLD))
            await asyncio.to_thread(held.wait, 10)
            with pytest.raises(DatabaseBusy, match="no database connection came free in 100 ms"):
                await db.read_hot(_count_as, "late", [])
        await holder
        assert await db.read_hot(_count_as, "after", []) == 0  # the connection is free again
    finally:
        await db.dispose()


def _thread(conn: Conn, *_: object) -> int:
    if isinstance(conn, DriverConnection):
        _LOAD_COUNT.first(conn)
    else:
        conn.execute(select(func.count()).select_from(loads))
    return threading.get_ident()


async def test_where_each_mode_runs(settings: Settings) -> None:
    """SQLite runs the quick and shared reads and the hot writes on the event loop's thread (a
    hot write's COMMIT, and its BEGIN when that would wait, on the writer thread); the other
    modes, which may scan or delete many rows, on a reader or the writer thread. asyncpg runs
    all on the loop."""
    db = Database(settings)
    try:
        on_loop = [
            await db.read_quick(_thread),
            await db.read_shared(lambda conn, items: [_thread(conn) for _ in items], "x"),
            await db.write_hot(_thread),
        ]
        threaded = [await db.read(_thread), await db.read_hot(_thread), await db.write(_thread)]
    finally:
        await db.dispose()
    loop_thread = threading.get_ident()
    assert on_loop == [loop_thread] * 3
    if db.is_sqlite:
        assert loop_thread not in threaded
    else:
        assert threaded == [loop_thread] * 3


def _waiting_for_flock() -> bool:
    """Whether a process waits to take a ``flock`` (``/proc/locks`` lists waiters with ``->``)."""
    with open("/proc/locks") as locks:
        return any("-> FLOCK" in line for line in locks)


async def _until(condition: Callable[[], bool], what: str) -> None:
    async def met() -> bool:
        return condition()

    await wait_until(met, what)


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
        await _until(_waiting_for_flock, "the writer waits for the lock file")
        assert not write.done()
        fcntl.flock(held, fcntl.LOCK_UN)
        assert await asyncio.wait_for(write, 5) == "LOCKED"
        assert await db.read(_load_ids) == ["LOCKED"]
    finally:
        os.close(held)
        await db.dispose()


async def test_a_sqlite_write_begins_on_the_writer_thread_only_when_it_must_wait(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """A write's BEGIN runs on the loop when it need not wait; while another program holds the
    database's write lock it waits on the writer thread instead, goes through once the lock is
    free, and the connection keeps its ``busy_timeout``. The first write opens the connection,
    which may wait too, on the writer thread."""
    path = tmp_path / "loads.db"
    db = Database(Settings(database_url=dbutil.copy_sqlite(sqlite_template, path)))
    tried_on: list[int] = []  # the thread of each BEGIN tried, before it runs

    def note_begin(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("BEGIN"):
            tried_on.append(threading.get_ident())

    event.listen(db._backend._writer, "before_cursor_execute", note_begin)  # type: ignore[union-attr]
    other = sqlite3.connect(path, isolation_level=None)
    try:
        # Connections opened first: opening one sets the journal mode, which waits on the lock.
        assert await db.read_quick(_load_ids) == await db.write(_load_ids) == []
        other.execute("BEGIN IMMEDIATE")  # as the CLI or a migration would, mid-transaction
        write = asyncio.create_task(db.write(_add_load, "BUSY"))
        # Tried on the loop, refused at once; then tried (and waiting) on the writer thread.
        await _until(lambda: len(tried_on) == 3, "BEGIN waits on the writer thread")
        assert not write.done()
        other.execute("COMMIT")
        assert await asyncio.wait_for(write, 5) == "BUSY"
        timeout = await db.write(lambda conn: conn.exec_driver_sql("PRAGMA busy_timeout").scalar())
        assert timeout == Settings().sqlite_busy_timeout_ms
        assert await db.read(_load_ids) == ["BUSY"]
    finally:
        other.close()
        await db.dispose()
    loop = threading.get_ident()
    # The first write's, the one the lock held back (at once, then waiting), the last write's.
    writer = tried_on[0]
    assert tried_on == [writer, loop, writer, loop]
    assert writer != loop


_UNIT_MAY_END = threading.Event()
_UNIT_RUNS = threading.Event()


def _add_load_slowly(conn: Connection, load_id: str) -> str:
    """A plain unit (writer thread) that writes, then waits for the test."""
    _add_load(conn, load_id)
    _UNIT_RUNS.set()
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
    _UNIT_RUNS.clear()
    try:
        if left_while == "waiting for the lock file":
            fcntl.flock(held, fcntl.LOCK_EX)

        async def write_and_leave() -> asyncio.Task[str]:
            write = asyncio.ensure_future(db.write(_add_load_slowly, "LEFT"))
            if left_while == "a unit runs":
                await asyncio.to_thread(_UNIT_RUNS.wait, 10)
            else:
                await _until(_waiting_for_flock, "the writer waits for the lock file")
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

        def taken() -> bool:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        # The writer thread goes on, rolls back and lets go.
        wait_until_sync(taken, "the writer lets go of the lock file after the loop ended")
        fcntl.flock(held, fcntl.LOCK_UN)
        assert asyncio.run(db.read(_load_ids)) == []
    finally:
        _UNIT_MAY_END.set()
        os.close(held)
        asyncio.run(db.dispose())
