"""The two ends of a copy: opening either database, and what differs between SQLite and PostgreSQL.

Both ends are synchronous Core ``Connection``s, so the copy is one plain function: SQLite on the
``sqlite3`` driver, PostgreSQL on ``asyncpg`` through the ``sync_connection`` of an asyncio
connection, run inside SQLAlchemy's greenlet bridge (as ``AsyncConnection.run_sync`` does). The
asyncpg connection underneath is also reached directly, for ``COPY``.

* A SQLite source is opened read-only (``mode=ro``), and read in one ``BEGIN`` transaction: one
  snapshot for the whole copy. A PostgreSQL source is read in one ``REPEATABLE READ, READ ONLY``
  transaction, for the same reason.
* A SQLite target is written in one ``BEGIN IMMEDIATE`` transaction with foreign keys enforced;
  a PostgreSQL target in one transaction that first locks every table ``IN EXCLUSIVE MODE``
  (readers go on, writers wait). Nothing is visible, or kept, before the final commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, create_engine, event, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util.concurrency import await_, greenlet_spawn

from negotiation.copydb.plan import TablePlan
from negotiation.db import normalize_url
from negotiation.db.errors import sqlstate

VERSION_TABLE = "alembic_version"


def describe(url: str) -> str:
    """``url`` for messages: as the user wrote it, without the password."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """The file a SQLite URL names (None for an in-memory database)."""
    name = url.database
    return Path(name).absolute() if name and name != ":memory:" else None


def _read_only(url: URL) -> URL:
    path = sqlite_path(url)
    if path is None:
        raise ValueError("an in-memory SQLite database cannot be copied from")
    if not path.is_file():
        raise FileNotFoundError(f"source database file {path} does not exist")
    query = {"mode": "ro", "uri": "true"}
    return URL.create("sqlite", database=f"file:{quote(str(path))}", query=query)


@asynccontextmanager
async def connect(url: str, *, source: bool) -> AsyncIterator[Connection]:
    """A connection to ``url``: read-only for a ``source``, else for writing one transaction."""
    sync_url = normalize_url(url, asynchronous=False)
    if sync_url.get_backend_name() == "sqlite":
        engine = create_engine(_read_only(sync_url) if source else sync_url, poolclass=NullPool)
        begin = "BEGIN" if source else "BEGIN IMMEDIATE"

        @event.listens_for(engine, "connect")
        def _connect(dbapi: sqlite3.Connection, _record: Any) -> None:
            dbapi.isolation_level = None  # transactions begin where the "begin" event says
            dbapi.execute("PRAGMA busy_timeout = 30000")
            if not source:
                dbapi.execute("PRAGMA foreign_keys = ON")

        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()
        return
    options: dict[str, Any] = {}
    if source:
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    async_engine = create_async_engine(
        normalize_url(url, asynchronous=True), poolclass=NullPool, execution_options=options
    )
    try:
        async with async_engine.connect() as async_conn:
            yield async_conn.sync_connection  # type: ignore[misc]
    finally:
        await async_engine.dispose()


def is_postgresql(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def revision(conn: Connection) -> str | None:
    """The revision in ``alembic_version`` (None when there is no such table or row)."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return versions[0] if len(versions) == 1 else None


def tables_with_rows(conn: Connection, plans: Sequence[TablePlan]) -> list[str]:
    """The service tables that exist in the database and hold at least one row."""
    existing = set(inspect(conn).get_table_names())
    return [
        p.name
        for p in plans
        if p.name in existing and conn.execute(select(1).select_from(p.table).limit(1)).first()
    ]


def change_marker(conn: Connection) -> Any:
    """A value that changes whenever another connection commits a write to the database.

    SQLite: ``PRAGMA data_version`` (read outside any transaction). PostgreSQL: per table the
    row count and the sum of the rows' ``xmin`` (the id of the transaction that wrote each row
    version), which any insert, update or delete changes; read in the connection's snapshot.
    """
    if not is_postgresql(conn):
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        return raw.execute("PRAGMA data_version").fetchone()
    names = [str(name) for name in inspect(conn).get_table_names() if name != VERSION_TABLE]
    marker = []
    for name in sorted(names):
        quoted = conn.dialect.identifier_preparer.quote(name)
        # Identifiers from the database's own catalog, quoted.
        statement = f"SELECT count(*), coalesce(sum(xmin::text::bigint), 0) FROM {quoted}"  # noqa: S608
        marker.append((name, *conn.exec_driver_sql(statement).one()))
    return marker


def foreign_key_orphans(conn: Connection) -> list[str]:
    """SQLite: rows whose foreign key names a missing row (legacy data; PostgreSQL has none)."""
    if is_postgresql(conn):
        return []
    rows = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    return [f"{table} rowid {rowid} -> {parent}" for table, rowid, parent, _ in rows]


def lock_for_copy(conn: Connection, plans: Sequence[TablePlan]) -> bool:
    """Begin the target's transaction; on PostgreSQL lock out writers to every table.

    PostgreSQL: also skip the foreign-key triggers for this transaction when the user may
    (``session_replication_role``: a superuser, or a grant on the parameter). The source's
    foreign keys were checked before, so they would only repeat that check row by row, which
    is about a third of the copy's time. Returns whether they are skipped.
    """
    if not is_postgresql(conn):
        conn.exec_driver_sql("SELECT 1")  # BEGIN IMMEDIATE: the file's write lock
        return False
    names = ", ".join(conn.dialect.identifier_preparer.format_table(p.table) for p in plans)
    conn.exec_driver_sql(f"LOCK TABLE {names} IN EXCLUSIVE MODE")
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
    except DBAPIError as exc:
        if sqlstate(exc) != "42501":  # insufficient_privilege: keep the triggers
            raise
        return False
    return True


def write_table(
    conn: Connection,
    plan: TablePlan,
    batches: Iterator[list[tuple[Any, ...]]],
    advance: Callable[[int], None],
) -> None:
    """Insert every batch (driver-ready values in table column order) into ``plan``'s table.

    PostgreSQL: one binary ``COPY`` per table, fed batch by batch, so the server stores rows
    while the next batch is read. SQLite: ``executemany`` per batch.
    """
    if is_postgresql(conn):
        raw = conn.connection.driver_connection
        assert raw is not None

        async def records() -> AsyncIterator[tuple[Any, ...]]:
            while (batch := await greenlet_spawn(next, batches, None)) is not None:
                for row in batch:
                    yield row
                advance(len(batch))

        await_(raw.copy_records_to_table(plan.name, records=records(), columns=plan.column_names))
        return
    preparer = conn.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(c) for c in plan.column_names)
    marks = ", ".join("?" for _ in plan.column_names)
    table = preparer.format_table(plan.table)
    insert = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608 (model identifiers)
    for batch in batches:
        conn.exec_driver_sql(insert, batch)
        advance(len(batch))


def serial_high_water(conn: Connection, plan: TablePlan) -> int:
    """The highest id ever handed out for ``plan``'s serial column, as far as the database
    remembers: its sequence (PostgreSQL), its ``sqlite_sequence`` row (SQLite AUTOINCREMENT),
    else the highest id present."""
    assert plan.serial is not None
    remembered: Any = None
    if is_postgresql(conn):
        remembered = conn.execute(
            text("SELECT pg_sequence_last_value(pg_get_serial_sequence(:t, :c)::regclass)"),
            {"t": plan.name, "c": plan.serial.name},
        ).scalar()
    elif inspect(conn).has_table("sqlite_sequence"):
        remembered = conn.execute(
            text("SELECT max(seq) FROM sqlite_sequence WHERE name = :t"), {"t": plan.name}
        ).scalar()
    return max(int(remembered or 0), plan.max_serial(conn))


def continue_serial(conn: Connection, plan: TablePlan, last: int) -> None:
    """Make the target hand out ids after ``last`` for ``plan``'s serial column."""
    assert plan.serial is not None
    if is_postgresql(conn):
        conn.execute(
            text(
                "SELECT setval(pg_get_serial_sequence(:t, :c), :v, :called) "
                "WHERE pg_get_serial_sequence(:t, :c) IS NOT NULL"
            ),
            {"t": plan.name, "c": plan.serial.name, "v": max(last, 1), "called": last > 0},
        )
        return
    ddl = conn.execute(
        text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": plan.name}
    ).scalar()
    if last == 0 or "AUTOINCREMENT" not in str(ddl).upper():
        return  # without AUTOINCREMENT SQLite continues after the highest id present
    params = {"t": plan.name, "v": last}
    updated = conn.execute(
        text("UPDATE sqlite_sequence SET seq = max(seq, :v) WHERE name = :t"), params
    )
    if updated.rowcount == 0:
        conn.execute(text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :v)"), params)
