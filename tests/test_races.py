"""Races: concurrent rounds and session creation, locks held too long, retried transactions.

Each test runs on SQLite and PostgreSQL with requests that really overlap
(:func:`tests.conftest.concurrent_client`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from negotiation.app import create_app
from negotiation.db import Database, DriverConnection, normalize_url
from negotiation.db.errors import DatabaseBusy
from negotiation.settings import Settings
from tests import dbutil
from tests.conftest import API_KEY, LOAD
from tests.helpers import concurrent_client, with_settings

ABOVE_CEILING = 2500  # loadboard 2000, ceiling 2200: counters, then a reject in the last round


async def setup_calls(c: Any, n: int, load_id: str = "LD-RACE") -> list[int]:
    assert (await c.post("/api/loads", json={**LOAD, "load_id": load_id})).status_code == 201
    return [(await c.post("/api/calls", json={"load_id": load_id})).json()["id"] for _ in range(n)]


async def duplicate_round_numbers(url: str) -> list[Any]:
    return await dbutil.execute(
        url,
        "SELECT call_id, session_id, round_number FROM negotiations "
        "GROUP BY call_id, session_id, round_number HAVING count(*) > 1",
    )


@pytest.mark.parametrize("max_rounds", [3, 5])
@pytest.mark.parametrize("session_id", [None, "race-session"])
async def test_fifty_concurrent_offers_record_exactly_the_allowed_rounds(
    settings: Settings, database_url: str, max_rounds: int, session_id: str | None
) -> None:
    app = create_app(with_settings(settings, max_rounds=max_rounds))
    async with concurrent_client(app) as (c, _):
        [call_id] = await setup_calls(c, 1)
        body: dict[str, Any] = {"carrier_offer": ABOVE_CEILING, "session_id": session_id}
        responses = await asyncio.gather(
            *(c.post(f"/api/calls/{call_id}/negotiate", json=body) for _ in range(50))
        )
        created = sorted((r.json() for r in responses if r.status_code == 201), key=str)
        refused = [r for r in responses if r.status_code != 201]
        assert len(created) == max_rounds, [r.text for r in responses]
        assert {r.status_code for r in refused} == {409}
        assert {r.json()["error"]["code"] for r in refused} == {"NEGOTIATION_CLOSED"}

        rows = (await c.get(f"/api/calls/{call_id}/negotiations")).json()
        assert [r["round_number"] for r in rows] == list(range(1, max_rounds + 1))
        assert [r["decision"] for r in rows] == ["counter"] * (max_rounds - 1) + ["reject"]
        counters = [r["counter_offer"] for r in rows[:-1]]
        assert counters == sorted(counters), "counters never decrease"
        call = (await c.get(f"/api/calls/{call_id}")).json()
        assert call["negotiation_rounds"] == max_rounds and call["outcome"] == "rejected"
    assert await duplicate_round_numbers(database_url) == []


async def test_many_negotiations_at_once_stay_separate(
    settings: Settings, database_url: str
) -> None:
    """Three negotiations on each of 8 calls (8 loads; the sessions span the calls), four
    offers each at once: no final decision yet (5 rounds), so every offer is a counter, and
    each negotiation holds exactly rounds 1-4."""
    app = create_app(with_settings(settings, max_rounds=5))
    async with concurrent_client(app) as (c, _):
        calls = [(await setup_calls(c, 1, f"LD-SEP-{n}"))[0] for n in range(8)]
        work = [
            c.post(
                f"/api/calls/{call_id}/negotiate",
                json={"carrier_offer": ABOVE_CEILING, "session_id": session},
            )
            for call_id in calls
            for session in (None, "shared-a", "shared-b")
            for _ in range(4)
        ]
        responses = await asyncio.gather(*work)
        assert [r.status_code for r in responses] == [201] * len(work)
        for call_id in calls:
            call = (await c.get(f"/api/calls/{call_id}")).json()
            assert call["negotiation_rounds"] == 12
            for session in (None, "shared-a", "shared-b"):
                rows = (await c.get(f"/api/calls/{call_id}/negotiations")).json()
                numbers = sorted(r["round_number"] for r in rows if r["session_id"] == session)
                assert numbers == [1, 2, 3, 4]
    assert await duplicate_round_numbers(database_url) == []


async def test_fifty_concurrent_session_creates(settings: Settings, database_url: str) -> None:
    app = create_app(settings)
    async with concurrent_client(app) as (c, _):
        same = await asyncio.gather(
            *(c.post("/api/sessions", json={"session_id": "one-id"}) for _ in range(50))
        )
        assert sorted(r.status_code for r in same) == [201] + [409] * 49
        assert {r.json()["error"]["code"] for r in same if r.status_code == 409} == {
            "SESSION_EXISTS"
        }
        generated = await asyncio.gather(*(c.post("/api/sessions") for _ in range(50)))
        assert [r.status_code for r in generated] == [201] * 50
        assert len({r.json()["session_id"] for r in generated}) == 50
    rows = await dbutil.execute(database_url, "SELECT count(*) FROM sessions")
    assert rows[0][0] == 51


@contextmanager
def sqlite_write_lock(database_url: str) -> Iterator[None]:
    """Another process's writer: holds SQLite's write lock (``BEGIN IMMEDIATE``)."""
    connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


@asynccontextmanager
async def held_lock(database_url: str, call_id: int) -> AsyncIterator[None]:
    """The lock a round on ``call_id`` needs, held by someone else (SQLite: the whole file)."""
    if database_url.startswith("sqlite"):
        with sqlite_write_lock(database_url):
            yield
    else:
        async with dbutil.locked_row(database_url, "calls", call_id):
            yield


async def test_a_lock_held_too_long_is_503_database_busy_then_recovers(
    settings: Settings, database_url: str
) -> None:
    app = create_app(
        with_settings(settings, sqlite_busy_timeout_ms=50, lock_timeout_ms=50, db_retries=2)
    )
    async with concurrent_client(app) as (c, _):
        [call_id] = await setup_calls(c, 1)
        url = f"/api/calls/{call_id}/negotiate"
        async with held_lock(database_url, call_id):
            busy = await c.post(url, json={"carrier_offer": 2100})
            read = await c.get(f"/api/calls/{call_id}")
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"]["code"] == "DATABASE_BUSY"
        assert busy.headers["Retry-After"] == "1"
        assert read.status_code == 200, "reads go on while a writer holds the lock"
        after = await c.post(url, json={"carrier_offer": 2100})
        assert after.status_code == 201 and after.json()["round_number"] == 1


@asynccontextmanager
async def other_transaction(url: str) -> AsyncIterator[Any]:
    """A second connection's open transaction (PostgreSQL); committed by the test, or rolled
    back when the block ends without."""
    engine = create_async_engine(normalize_url(url, asynchronous=True))
    try:
        async with engine.connect() as conn, conn.begin():
            yield conn
    finally:
        await engine.dispose()


async def until_waiting_for_a_lock(url: str) -> None:
    await dbutil.wait_for_row(url, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'")


async def insert_round_two(other: Any, call_id: int, session_id: str | None) -> None:
    """Round 2 of the negotiation, inserted in the other transaction as a round would be."""
    await other.execute(
        text(
            "INSERT INTO negotiations (call_id, session_id, round_number, carrier_offer, "
            "decision, counter_offer, timestamp) "
            "VALUES (:call, :session, 2, 2400, 'counter', 2100, now())"
        ),
        {"call": call_id, "session": session_id},
    )


async def assert_recorded_as_the_last_round(waiting: Any, url: str) -> None:
    """The round that waited was recorded after round 2, as round 3 of 3; none duplicated."""
    response = await waiting
    assert response.status_code == 201, response.text
    assert response.json()["round_number"] == 3
    assert response.json()["decision"] == "reject"  # the last round of three
    assert await duplicate_round_numbers(url) == []


# A round is recorded on PostgreSQL in two statements without a lock (tried again when another
# request got in between), else in a transaction that locks the session first. The tests below
# make another request get in between, deterministically: they hold its uncommitted writes open in
# another transaction until the round waits for them (seen in pg_stat_activity), then commit. With
# no retries allowed, a round that acted on what it read before the wait would fail or collide. An
# Idempotency-Key runs the round inside the key's transaction: the locked path from the start.


@pytest.mark.postgres
@pytest.mark.parametrize("idempotency_key", [None, "waited-1"], ids=["unlocked", "locked"])
async def test_a_round_that_waited_for_its_session_reads_the_round_committed_meanwhile(
    postgres_url: str, idempotency_key: str | None
) -> None:
    """Without a key the round's write waited, found the session changed and wrote nothing:
    its two statements run again on what is now committed, with no lock taken."""
    statements: list[str] = []

    def capture(conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if isinstance(conn, DriverConnection):  # the app's unlocked tries, not the test's
            statements.append(sql)

    app = create_app(Settings(database_url=postgres_url, api_keys=(API_KEY,), db_retries=0))
    async with concurrent_client(app) as (c, _):
        [call_id] = await setup_calls(c, 1)
        url = f"/api/calls/{call_id}/negotiate"
        body = {"carrier_offer": ABOVE_CEILING, "session_id": "waited"}
        assert (await c.post(url, json=body)).json()["round_number"] == 1
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        async with other_transaction(postgres_url) as other:
            # Another round of the same negotiation, as record_round writes one: the session's
            # row written, the round inserted, not yet committed.
            await other.execute(
                text("UPDATE sessions SET last_activity = now() WHERE session_id = 'waited'")
            )
            await insert_round_two(other, call_id, "waited")
            event.listen(Engine, "before_cursor_execute", capture)
            try:
                waiting = asyncio.create_task(c.post(url, json=body, headers=headers))
                await until_waiting_for_a_lock(postgres_url)
                await other.commit()
                await assert_recorded_as_the_last_round(waiting, postgres_url)
            finally:
                event.remove(Engine, "before_cursor_execute", capture)
    if idempotency_key is None:  # read, write (refused: the session changed), read, write
        assert [sql.split(None, 1)[0] for sql in statements] == ["SELECT", "WITH"] * 2, statements
        assert "FOR UPDATE" not in " ".join(statements)


@pytest.mark.postgres
async def test_a_call_round_takes_the_calls_lock_before_it_inserts(postgres_url: str) -> None:
    """A round of a call's own negotiation (no session) locks the call's row before inserting,
    as the locked path does. Otherwise one that had inserted round 2 and waited for the lock
    deadlocked with the lock's holder inserting round 2 too: 50 offers at once took seconds,
    one deadlock_timeout per collision."""
    app = create_app(Settings(database_url=postgres_url, api_keys=(API_KEY,), db_retries=0))
    async with concurrent_client(app) as (c, _):
        [call_id] = await setup_calls(c, 1)
        url = f"/api/calls/{call_id}/negotiate"
        body = {"carrier_offer": ABOVE_CEILING}
        assert (await c.post(url, json=body)).json()["round_number"] == 1
        call = {"call": call_id}
        async with other_transaction(postgres_url) as other:
            # The locked path's round 2: the call's row locked, then the round inserted. A
            # deadlock is reported to this transaction, after 10 ms of waiting.
            await other.execute(text("SET LOCAL deadlock_timeout = '10ms'"))
            await other.execute(text("SELECT id FROM calls WHERE id = :call FOR UPDATE"), call)
            waiting = asyncio.create_task(c.post(url, json=body))
            await until_waiting_for_a_lock(postgres_url)
            await insert_round_two(other, call_id, None)
            await other.execute(
                text("UPDATE calls SET negotiation_rounds = 2 WHERE id = :call"), call
            )
            await other.commit()
        await assert_recorded_as_the_last_round(waiting, postgres_url)


@pytest.mark.postgres
async def test_a_session_closed_while_a_round_waits_refuses_the_round(postgres_url: str) -> None:
    app = create_app(Settings(database_url=postgres_url, api_keys=(API_KEY,), db_retries=0))
    async with concurrent_client(app) as (c, _):
        [call_id] = await setup_calls(c, 1)
        url = f"/api/calls/{call_id}/negotiate"
        body = {"carrier_offer": ABOVE_CEILING, "session_id": "closing"}
        assert (await c.post(url, json=body)).status_code == 201
        async with other_transaction(postgres_url) as other:
            await other.execute(
                text("UPDATE sessions SET status = 'closed' WHERE session_id = 'closing'")
            )
            waiting = asyncio.create_task(c.post(url, json=body))
            await until_waiting_for_a_lock(postgres_url)
            await other.commit()
        response = await waiting
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "SESSION_CLOSED"
        assert (await c.get(f"/api/calls/{call_id}")).json()["negotiation_rounds"] == 1
    rounds = await dbutil.execute(postgres_url, "SELECT count(*) FROM negotiations")
    assert rounds[0][0] == 1


@pytest.mark.postgres
@pytest.mark.parametrize(("status", "expected"), [("active", 201), ("closed", 409)])
async def test_a_session_id_registered_while_a_round_waits_is_used_as_registered(
    postgres_url: str, status: str, expected: int
) -> None:
    """The round saw no session row, so it registers one: another request registered the id
    first; the round goes on with that row (closed, here: refused)."""
    app = create_app(Settings(database_url=postgres_url, api_keys=(API_KEY,), db_retries=0))
    async with concurrent_client(app) as (c, _):
        [call_id] = await setup_calls(c, 1)
        async with other_transaction(postgres_url) as other:
            await other.execute(
                text(
                    "INSERT INTO sessions (session_id, status, ttl_seconds, created_at, "
                    "last_activity, expires_at) VALUES ('fresh', :status, 600, "
                    "now() at time zone 'utc', now() at time zone 'utc', "
                    "now() at time zone 'utc' + interval '600 seconds')"
                ),
                {"status": status},
            )
            waiting = asyncio.create_task(
                c.post(
                    f"/api/calls/{call_id}/negotiate",
                    json={"carrier_offer": ABOVE_CEILING, "session_id": "fresh"},
                )
            )
            await until_waiting_for_a_lock(postgres_url)
            await other.commit()
        response = await waiting
        assert response.status_code == expected, response.text
        if expected == 201:
            assert response.json()["round_number"] == 1
        session = (await c.get("/api/sessions/fresh")).json()
        assert session["ttl_seconds"] == 600  # the other request's row, not a second one
        assert session["stats"]["round_count"] == (1 if expected == 201 else 0)


@pytest.mark.postgres
@pytest.mark.parametrize("session_id", [None, "two-statements"])
async def test_an_uncontended_round_is_two_statements(
    postgres_url: str, session_id: str | None
) -> None:
    """Read, then write if unchanged: no lock, no BEGIN or COMMIT of its own (the first round
    in a session registers it in the second statement, the next ones record its activity)."""
    statements: list[str] = []

    def capture(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        statements.append(sql)

    app = create_app(Settings(database_url=postgres_url, api_keys=(API_KEY,)))
    async with concurrent_client(app) as (c, _):
        [call_id] = await setup_calls(c, 1)
        event.listen(Engine, "before_cursor_execute", capture)
        try:
            for round_number in (1, 2):
                statements.clear()
                response = await c.post(
                    f"/api/calls/{call_id}/negotiate",
                    json={"carrier_offer": ABOVE_CEILING, "session_id": session_id},
                )
                assert response.json()["round_number"] == round_number
                assert len(statements) == 2, statements
                assert statements[0].startswith("SELECT")
                assert "FOR UPDATE" not in " ".join(statements)
        finally:
            event.remove(Engine, "before_cursor_execute", capture)


class Flaky:
    """A unit of work that fails its first ``failures`` attempts with ``fail``, then writes."""

    def __init__(self, failures: int, fail: Any) -> None:
        self.failures = failures
        self.fail = fail
        self.attempts = 0

    def __call__(self, conn: Connection) -> int:
        self.attempts += 1
        conn.execute(text("DELETE FROM carriers WHERE mc_number = 'MC-FLAKY'"))
        conn.execute(
            text("INSERT INTO carriers (mc_number, company_name) VALUES ('MC-FLAKY', :n)"),
            {"n": f"attempt {self.attempts}"},
        )
        if self.attempts <= self.failures:
            self.fail(conn)
        return self.attempts


def postgres_error(code: str) -> Any:
    def fail(conn: Connection) -> None:
        conn.exec_driver_sql(
            f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{code}'; END $$"
        )

    return fail


def sqlite_locked(conn: Connection) -> None:
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode, locked.sqlite_errorname = 5, "SQLITE_BUSY"  # as sqlite3 sets them
    raise OperationalError("BEGIN IMMEDIATE", {}, locked)


def transient_failures(database_url: str) -> list[tuple[Any, type[Exception]]]:
    """Failures to inject, each with what is raised once the retries are spent."""
    if database_url.startswith("sqlite"):
        return [(sqlite_locked, DatabaseBusy)]
    return [
        (postgres_error("40001"), DatabaseBusy),  # serialization failure
        (postgres_error("40P01"), DatabaseBusy),  # deadlock detected
        (postgres_error("55P03"), DatabaseBusy),  # lock timeout
        (postgres_error("23505"), IntegrityError),  # unique violation: a bug if it persists
    ]


async def test_transient_failures_are_retried_within_the_budget(
    settings: Settings, database_url: str
) -> None:
    db = Database(with_settings(settings, db_retries=3))
    try:
        for fail, exhausted_error in transient_failures(database_url):
            unit = Flaky(3, fail)
            assert await db.write(unit) == 4, "three rolled-back attempts, the fourth commits"
            rows = await dbutil.execute(database_url, "SELECT company_name FROM carriers")
            assert [r[0] for r in rows] == ["attempt 4"]

            exhausted = Flaky(4, fail)
            with pytest.raises(exhausted_error):
                await db.write(exhausted)
            assert exhausted.attempts == 4
            rows = await dbutil.execute(database_url, "SELECT company_name FROM carriers")
            assert [r[0] for r in rows] == ["attempt 4"], "failed attempts left nothing"
    finally:
        await db.dispose()
