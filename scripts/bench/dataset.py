"""Benchmark databases: create and migrate a fresh one, fill it in bulk, check what was recorded.

The data is generated inside the database by one ``INSERT ... SELECT`` per table over a number
series (``generate_series`` on PostgreSQL, a recursive CTE on SQLite), so ten million rounds take
about a minute rather than an hour of single inserts. Every row is the shape the service writes:

* ``loads``: ``LOADS`` loads at a loadboard rate of 2,000 (ceiling 2,200).
* ``calls`` ``1..seeded_calls``: three rounds each (counter, counter, then accept or reject).
* ``sessions`` ``bench-s-00000000`` …: each groups two consecutive calls, so six rounds.
* ``calls`` after those: fresh calls with no rounds, for the record-a-round scenarios.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from negotiation.db import normalize_url

ROOT = Path(__file__).resolve().parents[2]
LOADS = 100
ROUNDS_PER_CALL = 3
CALLS_PER_SESSION = 2
T = TypeVar("T")


def session_name(index: int) -> str:
    """The id of seeded session number ``index`` (0-based)."""
    return f"bench-s-{index:08d}"


@dataclass(frozen=True)
class Dataset:
    """What a seeded database holds (ids are dense and start at 1)."""

    url: str
    rounds: int

    @property
    def calls(self) -> int:
        return -(-self.rounds // ROUNDS_PER_CALL)

    @property
    def sessions(self) -> int:
        return -(-self.calls // CALLS_PER_SESSION)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def run_on(url: str, fn: Callable[[Connection], T], *, autocommit: bool = False) -> T:
    """Run ``fn(conn)`` in one transaction on ``url`` (sqlite3 or asyncpg) and return its result."""
    if is_sqlite(url):
        engine = create_engine(normalize_url(url, asynchronous=False))
        try:
            with engine.connect() as conn:
                conn.connection.driver_connection.isolation_level = None  # type: ignore[union-attr]
                if autocommit:
                    return fn(conn)
                conn.exec_driver_sql("PRAGMA busy_timeout = 30000")
                # IMMEDIATE: take the write lock up front, even while the server runs.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                result = fn(conn)
                conn.exec_driver_sql("COMMIT")
                return result
        finally:
            engine.dispose()

    async def _async() -> T:
        engine = create_async_engine(
            normalize_url(url, asynchronous=True),
            isolation_level="AUTOCOMMIT" if autocommit else "READ COMMITTED",
        )
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()

    return asyncio.run(_async())


def create_database(url: str) -> None:
    """Make ``url`` an empty database: delete the SQLite file, or drop and create the PG one."""
    if is_sqlite(url):
        path = Path(make_url(url).database or "")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    drop_database(url)
    _on_server(url, 'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    """Drop the PostgreSQL database ``url`` names, if it exists (its sessions ended)."""
    _on_server(url, 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _on_server(url: str, statement: str) -> None:
    """``statement`` about the database ``url`` names (``{name}``), run outside it."""
    sql = statement.format(name=make_url(url).database)
    run_on(admin_url(url), lambda conn: conn.exec_driver_sql(sql), autocommit=True)


def admin_url(url: str) -> str:
    """The same PostgreSQL server's ``postgres`` database (which exists before ours does)."""
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def migrate(url: str) -> None:
    """``alembic upgrade head`` as an operator runs it (a subprocess in the repo root)."""
    env = {**os.environ, "NEGOTIATION_DATABASE_URL": url}
    alembic = Path(sys.executable).with_name("alembic")
    subprocess.run(
        [str(alembic), "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True
    )


# --- Generated rows. ``{x}`` is the series value; dialect snippets fill the rest. ---------------

_SQL = {
    "sqlite": {
        "series": "WITH RECURSIVE g(x) AS "
        "(SELECT :lo UNION ALL SELECT x + 1 FROM g WHERE x < :hi) ",
        "from": "FROM g",
        "name": "printf('{prefix}%08d', {expr})",
        "ts": "datetime(:base, '+' || ({expr}) || ' seconds') || '.000000'",
        "div": "({a}) / {b}",
        "true": "1",
        "false": "0",
    },
    "postgresql": {
        "series": "",
        "from": "FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS g(x)",
        "name": "'{prefix}' || lpad(CAST({expr} AS text), 8, '0')",
        "ts": "CAST(:base AS timestamp) + ({expr}) * interval '1 second'",
        "div": "({a}) / {b}",
        "true": "true",
        "false": "false",
    },
}


def _insert(conn: Connection, table: str, columns: dict[str, str], lo: int, hi: int) -> None:
    """``INSERT INTO table (columns) SELECT expressions FROM series(lo..hi)``."""
    if hi < lo:
        return
    sql = _SQL[conn.dialect.name]
    names = ", ".join(f'"{c}"' for c in columns)
    exprs = ", ".join(columns.values())
    statement = f"{sql['series']}INSERT INTO {table} ({names}) SELECT {exprs} {sql['from']}"
    base = (dt.datetime.now(dt.UTC) - dt.timedelta(days=400)).replace(tzinfo=None, microsecond=0)
    params: dict[str, Any] = {"lo": lo, "hi": hi}
    if ":base" in statement:
        params["base"] = base if conn.dialect.name == "postgresql" else base.isoformat(" ")
    conn.execute(text(statement), params)


def _snippets(dialect: str) -> dict[str, str]:
    return _SQL[dialect]


def _call_columns(dialect: str, *, fresh: bool) -> dict[str, str]:
    s = _snippets(dialect)
    return {
        "id": "x",
        "carrier_mc_number": s["name"].format(prefix="MC", expr="100000 + x % 5000"),
        "load_id": s["name"].format(prefix="BL", expr=f"x % {LOADS}"),
        "call_start_time": s["ts"].format(expr="x * 3"),
        "outcome": "'negotiating'" if fresh else "'rejected'",
        "initial_rate_offered": "2000.00",
        "negotiation_rounds": "0" if fresh else str(ROUNDS_PER_CALL),
        "transferred_to_rep": s["false"],
    }


def _round_columns(dialect: str) -> dict[str, str]:
    s = _snippets(dialect)
    r = "((x - 1) % 3 + 1)"  # round number
    call = s["div"].format(a="x - 1", b=ROUNDS_PER_CALL) + " + 1"
    session = s["div"].format(a="x - 1", b=ROUNDS_PER_CALL * CALLS_PER_SESSION)
    final = f"CASE WHEN ({call}) % 2 = 0 THEN 'accept' ELSE 'reject' END"
    return {
        "id": "x",
        "call_id": call,
        "session_id": s["name"].format(prefix="bench-s-", expr=session),
        "round_number": r,
        "carrier_offer": f"2600.00 - 100 * {r}",
        "decision": f"CASE WHEN {r} < 3 THEN 'counter' ELSE {final} END",
        "counter_offer": f"CASE WHEN {r} < 3 THEN 2000.00 + 70 * {r} END",
        "system_response": f"CASE WHEN {r} < 3 THEN 'We can do a little better on this load.' "
        "ELSE 'Thanks, that is our final answer.' END",
        "timestamp": s["ts"].format(expr="x"),
    }


def _fix_sequences(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        for table in ("calls", "negotiations"):
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )


def seed(url: str, rounds: int) -> Dataset:
    """Fill a freshly migrated database with ``rounds`` rounds (and their calls and sessions)."""
    data = Dataset(url, rounds)

    def _load(conn: Connection) -> None:
        d = conn.dialect.name
        s = _snippets(d)
        _insert(
            conn,
            "loads",
            {
                "load_id": s["name"].format(prefix="BL", expr="x"),
                "origin": "'Chicago, IL'",
                "destination": "'Dallas, TX'",
                "pickup_datetime": s["ts"].format(expr="x"),
                "delivery_datetime": s["ts"].format(expr="x + 86400"),
                "equipment_type": "'Dry Van'",
                "loadboard_rate": "2000.00",
                "status": "'available'",
                "created_at": s["ts"].format(expr="x"),
                "updated_at": s["ts"].format(expr="x"),
            },
            0,
            LOADS - 1,
        )
        _insert(conn, "calls", _call_columns(d, fresh=False), 1, data.calls)
        far = "CAST(:base AS timestamp) + interval '3650 days'"
        if d == "sqlite":
            far = "datetime(:base, '+3650 days') || '.000000'"
        _insert(
            conn,
            "sessions",
            {
                "session_id": s["name"].format(prefix="bench-s-", expr="x"),
                "client_id": "'bench'",
                "status": "'active'",
                "ttl_seconds": str(3650 * 86400),
                "created_at": s["ts"].format(expr="x * 6"),
                "last_activity": s["ts"].format(expr="x * 6 + 5"),
                "expires_at": far,
            },
            0,
            data.sessions - 1,
        )
        _insert(conn, "negotiations", _round_columns(d), 1, rounds)
        _fix_sequences(conn)

    if is_sqlite(url):
        _sqlite_bulk(url, _load)
    else:
        run_on(url, _load)
        run_on(url, lambda conn: conn.exec_driver_sql("VACUUM ANALYZE"), autocommit=True)
    return data


def _sqlite_bulk(url: str, fn: Callable[[Connection], None]) -> None:
    """Run a bulk load with the WAL and fsyncs off, then put the file back in WAL mode."""

    def _fast(conn: Connection) -> None:
        conn.exec_driver_sql("PRAGMA journal_mode = OFF")
        conn.exec_driver_sql("PRAGMA synchronous = OFF")
        conn.exec_driver_sql("PRAGMA cache_size = -262144")  # 256 MiB while building indexes
        conn.exec_driver_sql("BEGIN")
        fn(conn)
        conn.exec_driver_sql("COMMIT")
        conn.exec_driver_sql("PRAGMA journal_mode = WAL")

    run_on(url, _fast, autocommit=True)


def add_fresh_calls(url: str, count: int) -> int:
    """Add ``count`` calls with no rounds; return the first id (ids are consecutive)."""
    return run_on(url, lambda conn: fresh_calls(conn, count))


def fresh_calls(conn: Connection, count: int) -> int:
    """:func:`add_fresh_calls` in the transaction of ``conn``."""
    first = int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) + 1 FROM calls").scalar_one())
    _insert(conn, "calls", _call_columns(conn.dialect.name, fresh=True), first, first + count - 1)
    _fix_sequences(conn)
    return first


def duplicated_rounds(url: str) -> int:
    """How many stored rounds repeat the round number of another in the same negotiation."""
    return _count(
        url,
        "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM negotiations "
        "GROUP BY call_id, coalesce(session_id, ''), round_number HAVING count(*) > 1) AS d",
    )


def round_count(url: str, calls: range | None = None) -> int:
    """Rounds recorded, on ``calls`` only when given."""
    where = "" if calls is None else f" WHERE call_id >= {calls.start} AND call_id < {calls.stop}"
    return _count(url, f"SELECT count(*) FROM negotiations{where}")


def rounds_beyond_limit(url: str, max_rounds: int = 3) -> int:
    """Rounds numbered past the policy's limit (must be zero)."""
    return _count(url, f"SELECT count(*) FROM negotiations WHERE round_number > {int(max_rounds)}")


def _count(url: str, query: str) -> int:
    """The one number ``query`` answers, read in autocommit: in a ``BEGIN IMMEDIATE``
    transaction a check held SQLite's write lock outside the service's writer lock file, so a
    round arriving meanwhile (one still in flight as a run ended) waited in SQLite's busy
    handler."""
    return int(run_on(url, lambda conn: conn.exec_driver_sql(query).scalar_one(), autocommit=True))
