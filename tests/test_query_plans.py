"""The by-session and by-call+session round queries use their indexes on both databases (and
so do the statements that read several sessions' or calls' pages at once on PostgreSQL).

The statements are the ones the real query functions issue (captured as they execute), and
the plans come from the database itself: ``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN`` on
PostgreSQL after ``ANALYZE`` over a few thousand rounds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, event, insert, text

from negotiation.queries import (
    call_pages,
    calls,
    rounds,
    rounds_by_call,
    rounds_by_session,
    session_pages,
)
from negotiation.settings import Settings
from tests.helpers import db_write, insert_load

CALLS, SESSIONS, ROUNDS = 100, 500, 3000
SESSION_INDEX = {"idx_negotiations_session_id"}
CALL_SESSION_INDEXES = {"idx_negotiations_call_session", "uq_negotiations_call_session_round"}


def _seed(conn: Connection) -> None:
    now = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)
    insert_load(conn, "LD1", 2000)
    conn.execute(insert(calls), [{"id": i + 1, "load_id": "LD1"} for i in range(CALLS)])
    conn.execute(
        insert(rounds),
        [
            {
                "call_id": i % CALLS + 1,
                "session_id": f"s{i % SESSIONS}",
                "round_number": i // SESSIONS + 1,
                "carrier_offer": 2100,
                "decision": "counter",
                "counter_offer": 2050,
                "timestamp": now,
            }
            for i in range(ROUNDS)
        ],
    )
    if conn.dialect.name == "postgresql":
        conn.execute(text("ANALYZE negotiations"))


def _plan_of(conn: Connection, query: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """Run ``query`` as the service would, then EXPLAIN the one statement it issued."""
    issued: list[tuple[str, Any]] = []

    def capture(*event_args: Any) -> None:
        issued.append((event_args[2], event_args[3]))

    event.listen(conn, "before_cursor_execute", capture)
    try:
        query(conn, *args, **kwargs)
    finally:
        event.remove(conn, "before_cursor_execute", capture)
    assert len(issued) == 1, issued
    statement, parameters = issued[0]
    if conn.dialect.name == "sqlite":
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        return "\n".join(str(row[-1]) for row in plan)
    plan = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
    return "\n".join(str(row[0]) for row in plan)


def _plans(conn: Connection) -> dict[str, str]:
    _seed(conn)
    # SQLite reads pages asked for together one by one, each by the single-page statement.
    shared = slice(None) if conn.dialect.name == "postgresql" else slice(1)
    sessions = [("s7", None, 1000), ("s8", 10, 2)]
    calls = [(8, "s7", None, 1000), (9, None, 10, 2)]
    return {
        "by_sessions_together": _plan_of(conn, session_pages, sessions[shared]),
        "by_calls_together": _plan_of(conn, call_pages, calls[shared]),
        "by_session": _plan_of(conn, rounds_by_session, "s7", after_id=None, limit=1000),
        "by_session_after": _plan_of(conn, rounds_by_session, "s7", after_id=10, limit=2),
        "by_call_session": _plan_of(conn, rounds_by_call, 8, "s7", after_id=None, limit=1000),
        "by_call_session_after": _plan_of(conn, rounds_by_call, 8, "s7", after_id=10, limit=2),
    }


def _uses_one_of(plan: str, indexes: set[str]) -> bool:
    return any(index in plan for index in indexes)


def _full_scan(plan: str) -> bool:
    # SQLite says "SCAN negotiations" for a full table scan ("SEARCH" when it uses a key).
    # Only the rounds matter: the profile versions joined to them are a handful of rows, which
    # PostgreSQL may rightly read whole.
    return "Seq Scan on negotiations" in plan or any(
        line.strip().startswith("SCAN negotiations") for line in plan.splitlines()
    )


async def test_round_queries_use_their_indexes(settings: Settings) -> None:
    plans = await db_write(settings, _plans)
    for name, indexes in (
        ("by_sessions_together", SESSION_INDEX),
        ("by_calls_together", CALL_SESSION_INDEXES),
        ("by_session", SESSION_INDEX),
        ("by_session_after", SESSION_INDEX),
        ("by_call_session", CALL_SESSION_INDEXES),
        ("by_call_session_after", CALL_SESSION_INDEXES),
    ):
        plan = plans[name]
        assert _uses_one_of(plan, indexes), (name, plan)
        assert not _full_scan(plan), (name, plan)
