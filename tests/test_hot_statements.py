"""Every hot statement returns what ``Connection.execute`` returns for the same statement.

Hot statements (``negotiation.db.statements``) compile Core statements through SQLAlchemy's
compiler internals and run them on the driver's cursor with SQLAlchemy's own bind and result
processors. This checks that shortcut against SQLAlchemy's execution on both databases: the
service's own traffic is recorded (every hot statement run, with its parameters), then each is
run again both ways on the resulting database, writes inside a savepoint that is rolled back.
A statement the traffic did not reach fails the test, so a new hot statement must be covered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from negotiation import booking, queries, recording, round_statements, sessions
from negotiation.app import create_app
from negotiation.db import normalize_url
from negotiation.db.statements import HotStatement
from negotiation.settings import Settings
from tests.conftest import API_KEY, Clock
from tests.helpers import concurrent_client, seed_calls

START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


#: Statements for every database that one of them never runs: PostgreSQL records a round with
#: combined statements (negotiation.round_statements), and only it locks a call's row.
NOT_RUN_ON = {
    "sqlite": {
        "negotiation.round_statements.CALL_LOCKED",
        # The row lock on a call's load.
        "negotiation.booking.LOCK_LOAD",
    },
    "postgresql": {
        "negotiation.round_statements.CALL",
        "negotiation.round_statements.TOUCH",
        "negotiation.round_statements.RECORD",
        *(
            f"negotiation.round_statements.CLOSE_CALL[{d!r}]"
            for d in ("accept", "counter", "reject")
        ),
        # An unseen session's first round is rejected only when MAX_ROUNDS is 1.
        "negotiation.round_statements.RECORD_IF_UNCHANGED[('unseen', 'reject')]",
    },
}


def _module_statements() -> Iterator[tuple[str, HotStatement]]:
    """The hot statements defined at module level (alone or in a dict) in the service."""
    for module in (queries, round_statements, sessions, booking):
        for name, value in vars(module).items():
            if isinstance(value, HotStatement):
                yield f"{module.__name__}.{name}", value
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(item, HotStatement):
                        yield f"{module.__name__}.{name}[{key!r}]", item


async def _traffic(client: httpx.AsyncClient, clock: Clock) -> None:
    """Requests that run every round path: sessions created, unseen and closed, the calls'
    default negotiations, every decision (each final one ends its call: one load per call),
    a booking by PATCH, listings alone and together, a purge."""
    # Call 8 stays open for the locked path (test below).
    await seed_calls(client, calls=8, sessions=("s-created", "s-gone"), one_load_each=True)
    together = [(1, "s-created", 2500), (2, "s-unseen", 2600), (4, None, 2400), (6, None, 2600)]
    offers = [
        (1, "s-created", 2300), (1, "s-created", 2150),
        (2, "s-unseen", 2600), (2, "s-unseen", 2600),
        (3, "s-unseen-2", 1990), (4, None, 1990), (5, "s-gone", 2100),
        (5, "s-unseen-3", 2600), (5, "s-unseen-3", 2600), (5, "s-unseen-3", 2600),
        (6, None, 2600), (6, None, 2600),
    ]  # fmt: skip

    async def offer(call_id: int, session_id: str | None, amount: int) -> None:
        body = {"carrier_offer": amount} | ({"session_id": session_id} if session_id else {})
        response = await client.post(f"/api/calls/{call_id}/negotiate", json=body)
        assert response.status_code == 201, response.text

    # The first offers on four calls at once (recorded together on PostgreSQL), then one by one.
    await asyncio.gather(*(offer(*o) for o in together))
    for o in offers:
        clock.advance(5)
        await offer(*o)
    booked = {"outcome": "accepted", "final_rate_agreed": 2100}
    assert (await client.patch("/api/calls/7", json=booked)).is_success
    reads = [
        "/api/negotiations/session/s-created",
        "/api/negotiations/session/s-unseen?limit=1",
        "/api/calls/1/negotiations",
        "/api/calls/2/negotiations?session_id=s-unseen&limit=2",
        "/api/negotiations?decision=counter&limit=2",
        "/api/sessions/s-created",
        "/api/negotiations/session/s-never-seen",
        "/api/negotiations/session/s-created?after_id=1000",
        "/api/calls/99/negotiations",
        "/api/calls/1/negotiations?after_id=1000",
    ]
    for _ in range(2):  # once alone, once all together (shared statements on PostgreSQL)
        for path in reads:
            assert (await client.get(path)).status_code < 500, path
        answers = await asyncio.gather(*(client.get(path) for path in reads))
        assert all(a.status_code < 500 for a in answers)
    assert (await client.delete("/api/sessions/s-gone?purge=true")).is_success


def _executed(hot: HotStatement, statement: Any) -> Any:
    """``statement`` run by ``Connection.execute``: its rows, or none.

    A hot statement takes its parameters as bound values only; ``Connection.execute`` would
    also turn a parameter named like a column of an UPDATE in a CTE into a SET clause. So a
    query gets its values bound into it (``params()``, the absent ones as NULL, as a hot
    statement binds them); an INSERT or UPDATE gets only its own bind names (an insert compiled
    for ``column_keys``, its values as given).
    """

    def execute(conn: Connection, params: dict[str, Any]) -> list[Any]:
        if hot._column_keys is not None:
            result = conn.execute(statement, params)
        else:
            binds = statement.compile(dialect=conn.dialect).binds
            bound = {n: params.get(n) for n, b in binds.items() if n in params or b.required}
            if statement.is_dml:  # its bind names are no column names: nothing becomes a SET
                result = conn.execute(statement, bound)
            else:
                result = conn.execute(statement.params(bound))
        return list(result) if result.returns_rows else []

    return execute


def _as_json(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def _replay(conn: Connection, runs: list[tuple[HotStatement, dict[str, Any]]]) -> list[str]:
    """Each recorded run again, hot and through ``Connection.execute``; the differences.

    Each runs in a savepoint rolled back after it. A round is inserted with its number moved
    past the recorded ones, so that the unique index lets it in again; ids, which sequences
    hand out anew, are left out of the comparison.
    """
    differences = []
    for hot, recorded in runs:
        statement = hot._statements.get(conn.dialect.name, hot._statements.get("*"))
        assert statement is not None
        params = dict(recorded)
        if "round_number" in params:
            params["round_number"] += 1000
        answers = []
        for execute in (hot.all, _executed(hot, statement)):
            with conn.begin_nested() as savepoint:
                answers.append([tuple(row) for row in execute(conn, params)])
                savepoint.rollback()
        if hot.json:  # rows for a JSON response: money is the float of the exact amount
            answers[1] = [tuple(_as_json(v) for v in row) for row in answers[1]]
        keys = [column.key for column in statement.exported_columns]  # type: ignore[attr-defined]
        kept = [i for i, key in enumerate(keys) if key != "id"]
        by_hot, by_execute = ([tuple(row[i] for i in kept) for row in rows] for rows in answers)
        if by_hot != by_execute:
            differences.append(f"{statement}\n{params}\nhot: {by_hot}\nexecute: {by_execute}")
    return differences


async def test_hot_statements_return_what_connection_execute_returns(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: dict[int, tuple[HotStatement, dict[str, Any]]] = {}
    run = HotStatement.all

    def recorded(self: HotStatement, conn: Any, params: Any = None) -> list[Any]:
        key = hash((id(self), repr(sorted((params or {}).items()))))
        runs.setdefault(key, (self, dict(params or {})))
        return run(self, conn, params)

    monkeypatch.setattr(HotStatement, "all", recorded)
    clock = Clock(START)
    app = create_app(Settings(database_url=database_url, api_keys=(API_KEY,)), clock=clock)
    async with concurrent_client(app) as (client, _):
        await _traffic(client, clock)
        if "postgresql" in database_url:  # the locked path too, which competition takes
            with monkeypatch.context() as patch:
                patch.setattr(recording, "_record_unlocked", lambda *_: None)
                body = {"carrier_offer": 2500, "session_id": "s-locked"}
                assert (await client.post("/api/calls/8/negotiate", json=body)).is_success
                assert (await client.post("/api/calls/8/negotiate", json=body)).is_success
                body = {"carrier_offer": 2500}
                assert (await client.post("/api/calls/8/negotiate", json=body)).is_success
    monkeypatch.setattr(HotStatement, "all", run)

    dialect = "postgresql" if "postgresql" in database_url else "sqlite"
    reached = {id(hot) for hot, _ in runs.values()}
    missing = [
        name
        for name, hot in _module_statements()
        if id(hot) not in reached
        and (dialect in hot._statements or "*" in hot._statements)
        and name not in NOT_RUN_ON[dialect]
    ]
    assert not missing, f"the traffic ran no {missing}: extend _traffic"

    engine = create_async_engine(normalize_url(database_url, asynchronous=True))
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(_replay, list(runs.values()))
    finally:
        await engine.dispose()
    assert not differences, "\n\n".join(differences)
