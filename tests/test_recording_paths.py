"""Both ways PostgreSQL records a round store the same rows and answer the same bodies.

A round on PostgreSQL is first tried as guarded statements without locks (again, up to
``UNLOCKED_TRIES`` times, when something competed with it) and then recorded in a transaction
that locks first (``negotiation.recording``). The same offers are sent twice to a fresh
database: once as the service runs, once with the unlocked attempt always standing aside, so
every round takes the locked path. SQLite, which has only the locked path, must agree with
both. Then rounds told that another request got in first try again, and lock after the last
try, with the same outcome.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from negotiation import recording
from negotiation.app import create_app
from negotiation.db import Database
from negotiation.db.engines import normalize_url
from negotiation.queries import calls, loads, rounds, sessions
from negotiation.round_batches import RECORD_TOGETHER, SESSION_KEYS
from negotiation.settings import Settings
from tests import dbutil
from tests.conftest import API_KEY, Clock
from tests.helpers import concurrent_client, seed_calls

START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
#: Columns the database fills from its own clock rather than the app's.
WALL_CLOCK = {"created_at", "updated_at", "call_start_time"}

#: (call, session id or None, body): sessions created first, unseen ones registered by their
#: first round, the calls' default negotiations; counters, accepts, rejects and refusals.
OFFERS: list[tuple[int, str | None, dict[str, Any]]] = [
    (1, "s-created", {"carrier_offer": 2500, "notes": "opening"}),
    (1, "s-created", {"carrier_offer": 2300.1}),
    (1, "s-created", {"carrier_offer": 2150}),
    (1, "s-created", {"carrier_offer": 2100}),  # closed: 409
    (2, "s-unseen", {"carrier_offer": 2600}),
    (2, "s-unseen", {"carrier_offer": 2600}),
    (2, "s-unseen", {"carrier_offer": 2600}),
    (2, None, {"carrier_offer": 2400}),
    (2, None, {"carrier_offer": 1990}),
    (3, "s-closed", {"carrier_offer": 2100}),  # closed session: 409
    (4, None, {"carrier_offer": 2100}),  # no such call: 404
]


async def _negotiate(url: str) -> tuple[list[tuple[int, Any]], dict[str, list[Any]]]:
    clock = Clock(START)
    app = create_app(Settings(database_url=url, api_keys=(API_KEY,)), clock=clock)
    answers = []
    async with AsyncTestClient(app) as client:
        client.headers["X-API-Key"] = API_KEY
        await seed_calls(client, calls=3, sessions=("s-created", "s-closed"))
        assert (await client.delete("/api/sessions/s-closed")).is_success
        for call_id, session_id, body in OFFERS:
            clock.advance(7)
            extra = {"session_id": session_id} if session_id else {}
            response = await client.post(f"/api/calls/{call_id}/negotiate", json=body | extra)
            answers.append((response.status_code, _without_request(response.json())))
    tables = {}
    for table in (loads, calls, sessions, rounds):
        columns = [c for c in table.c if c.key not in WALL_CLOCK]
        rows = await dbutil.execute(url, select(*columns).order_by(*table.primary_key.columns))
        tables[table.name] = [tuple(row) for row in rows]
    return answers, tables


def _without_request(body: Any) -> Any:
    """The body without what differs per request (its id and the time of an error)."""
    if isinstance(body, dict) and body.get("success") is False:
        return {k: v for k, v in body.items() if k not in ("request_id", "timestamp")}
    return body


@pytest.mark.postgres
async def test_the_unlocked_and_the_locked_path_store_the_same_rows(
    postgres_url: str, sqlite_template: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_served = await _negotiate(postgres_url)

    await asyncio.to_thread(dbutil.truncate_postgres, postgres_url)
    unlocked_attempts = 0

    def stand_aside(*_args: Any) -> None:
        nonlocal unlocked_attempts
        unlocked_attempts += 1
        return None

    with monkeypatch.context() as patch:
        patch.setattr(recording, "_record_unlocked", stand_aside)
        locked_only = await _negotiate(postgres_url)

    assert unlocked_attempts > 0, "the locked-only run never reached the unlocked attempt"
    assert locked_only == as_served
    on_sqlite = await _negotiate(dbutil.copy_sqlite(sqlite_template, tmp_path / "loads.db"))
    assert on_sqlite[0] == as_served[0]
    assert on_sqlite[1]["negotiations"] == as_served[1]["negotiations"]


def _told_of_changes(patch: pytest.MonkeyPatch, tries_refused: int) -> dict[str, int]:
    """Each round's first ``tries_refused`` unlocked tries answer that another request got in
    first (without trying); the unlocked and locked attempts are counted."""
    counts = {"unlocked": 0, "locked": 0}
    tries: dict[int, int] = {}
    offers: list[Any] = []  # kept alive, so that no other offer takes one's id
    unlocked, locked = recording._record_unlocked, recording._record_locked

    def unlocked_told(conn: Any, o: Any, context: Any) -> Any:
        counts["unlocked"] += 1
        offers.append(o)
        tries[id(o)] = tries.get(id(o), 0) + 1
        return recording._CHANGED if tries[id(o)] <= tries_refused else unlocked(conn, o, context)

    def locked_counted(conn: Any, o: Any) -> Any:
        counts["locked"] += 1
        return locked(conn, o)

    patch.setattr(recording, "_record_unlocked", unlocked_told)
    patch.setattr(recording, "_record_locked", locked_counted)
    return counts


@pytest.mark.postgres
async def test_a_round_that_meets_changes_is_tried_again_then_locked(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Told another request got in first, a round tries its two statements again, up to
    ``UNLOCKED_TRIES`` times in all, then takes the locked path; the rows and answers stay
    those of the service as it runs."""
    with monkeypatch.context() as patch:
        served = _told_of_changes(patch, tries_refused=0)
        as_served = await _negotiate(postgres_url)
    offers = served["unlocked"]  # one unlocked try per offer that reached it
    assert offers > 0 and served["locked"] < offers
    for refused in (1, recording.UNLOCKED_TRIES - 1, recording.UNLOCKED_TRIES):
        await asyncio.to_thread(dbutil.truncate_postgres, postgres_url)
        with monkeypatch.context() as patch:
            counts = _told_of_changes(patch, tries_refused=refused)
            assert await _negotiate(postgres_url) == as_served
        if refused < recording.UNLOCKED_TRIES:
            assert counts == {"unlocked": offers * (refused + 1), "locked": served["locked"]}
        else:
            assert counts == {"unlocked": offers * refused, "locked": offers}


@pytest.mark.postgres
async def test_contexts_read_together_are_those_read_alone(postgres_url: str) -> None:
    """Rounds asked for at once share the read their decisions depend on: each gets the row
    it would have read alone (a created, an unseen, a closed session, a call's own
    negotiation, a missing call, the same negotiation twice)."""
    await _negotiate(postgres_url)
    negotiations: list[tuple[int, str | None]] = [
        (1, "s-created"), (2, "s-unseen"), (2, None), (3, "s-closed"), (4, None),
        (1, "s-never-seen"), (2, "s-unseen"), (3, None),
    ]  # fmt: skip
    db = Database(Settings(database_url=postgres_url, api_keys=(API_KEY,)))
    try:
        together = await db.read_hot(recording.round_contexts, negotiations)
        alone = [(await db.read_hot(recording.round_contexts, [n]))[0] for n in negotiations]
    finally:
        await db.dispose()

    def fields(row: Any) -> dict[str, Any] | None:
        return None if row is None else {k: v for k, v in row._mapping.items() if k != "item"}

    assert [fields(row) for row in together] == [fields(row) for row in alone]
    assert [row is None for row in together] == [n[0] == 4 for n in negotiations]
    created, closed, unseen = (fields(together[i]) or {} for i in (0, 3, 5))
    assert created["round_number"] == 3 and unseen["round_number"] is None
    assert closed["status"] == "closed" and unseen["status"] is None


#: Waves of offers, each wave sent at once: (call, session id or None, offer). Sessions
#: created, unseen and closed; calls' own negotiations; a call negotiated in a session and on
#: its own in one wave; a session's offer twice in one wave; an accept; a missing call.
WAVES: list[list[tuple[int, str | None, float]]] = [
    [(1, "s-created", 2500), (2, "s-unseen", 2600), (3, None, 2500), (4, "s-closed", 2500),
     (5, "s-twice", 2500), (5, "s-twice", 2450), (6, None, 2500), (6, "s-call-6", 2400),
     (99, "s-nowhere", 2500), (7, "s-accepts", 2500)],
    [(1, "s-created", 2400), (2, "s-unseen", 2500), (3, None, 2400), (5, "s-twice", 2400),
     (6, None, 2300), (6, "s-call-6", 2300), (7, "s-accepts", 2050), (8, None, 2100)],
    [(1, "s-created", 2300), (2, "s-unseen", 2400), (3, None, 2300), (5, "s-twice", 2300),
     (6, "s-call-6", 2250), (8, None, 2000), (7, "s-accepts", 2000)],
]  # fmt: skip


async def _waves(url: str, *, together: bool) -> tuple[list[Any], dict[str, list[Any]]]:
    """Every wave's answers (in wave order, without ids) and the tables' rows (without ids)."""
    clock = Clock(START)
    app = create_app(Settings(database_url=url, api_keys=(API_KEY,)), clock=clock)
    answers: list[Any] = []
    async with concurrent_client(app) as (client, gauge):
        await seed_calls(client, calls=8, sessions=("s-created", "s-closed"), one_load_each=True)
        assert (await client.delete("/api/sessions/s-closed")).is_success

        async def offer(call_id: int, session_id: str | None, amount: float) -> Any:
            body = {"carrier_offer": amount} | ({"session_id": session_id} if session_id else {})
            response = await client.post(f"/api/calls/{call_id}/negotiate", json=body)
            answer = _without_request(response.json())
            return response.status_code, {k: v for k, v in answer.items() if k != "id"}

        for wave in WAVES:
            clock.advance(11)
            if together:
                answers += await asyncio.gather(*(offer(*o) for o in wave))
            else:
                answers += [await offer(*o) for o in wave]
        assert gauge.peak > 1 if together else gauge.peak == 1
    tables = {}
    for table in (loads, calls, sessions, rounds):
        columns = [c for c in table.c if c.key not in WALL_CLOCK | {"id", "round_id"}]
        rows = await dbutil.execute(url, select(*columns))
        tables[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return answers, tables


@pytest.mark.postgres
async def test_offers_sent_together_store_what_one_at_a_time_stores(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offers asked for at the same time are recorded together (one read, one write for all
    that can go together; the others on their own): the same answers and rows as the same
    offers sent one after another, where every round is recorded alone."""
    one_at_a_time = await _waves(postgres_url, together=False)
    await asyncio.to_thread(dbutil.truncate_postgres, postgres_url)
    batches: list[tuple[int, int]] = []  # (rounds given, rounds recorded)
    together_statement = RECORD_TOGETHER

    class Counted:
        def all(self, conn: Any, params: dict[str, Any]) -> list[Any]:
            rows = together_statement.all(conn, params)
            batches.append((len(params["a_item"]), len(rows)))
            return rows

    monkeypatch.setattr(recording, "RECORD_TOGETHER", Counted())
    sent_together = await _waves(postgres_url, together=True)
    # Nothing else wrote meanwhile: every round given to the shared statement was recorded.
    assert batches and max(given for given, _ in batches) > 2, batches
    assert all(given == recorded for given, recorded in batches), batches
    assert sent_together == one_at_a_time
    statuses = [status for status, _ in one_at_a_time[0]]
    assert statuses.count(201) == 21 and sorted(set(statuses)) == [201, 404, 409]


@pytest.mark.postgres
@pytest.mark.parametrize("lost", [False, True], ids=["statement-failed", "connection-lost"])
async def test_a_shared_unit_whose_write_fails_retries_only_what_wrote_nothing(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, lost: bool
) -> None:
    """A round's write that failed whole (a lock timeout, say) is tried again on its own and
    recorded once; one whose connection was lost may have committed, so it is answered 503
    (DATABASE_UNAVAILABLE) and not run again: the client retries, and one round is stored."""
    unlocked = recording._record_unlocked
    failures: list[Any] = []

    def fails_once(conn: Any, o: Any, context: Any) -> Any:
        if not failures:
            failures.append(o)
            raise DBAPIError("INSERT …", None, Exception("boom"), connection_invalidated=lost)
        return unlocked(conn, o, context)

    monkeypatch.setattr(recording, "_record_unlocked", fails_once)
    app = create_app(Settings(database_url=postgres_url, api_keys=(API_KEY,)))
    async with AsyncTestClient(app) as client:
        client.headers["X-API-Key"] = API_KEY
        await seed_calls(client, calls=1)
        first = await client.post("/api/calls/1/negotiate", json={"carrier_offer": 2500})
        if lost:
            assert first.status_code == 503, first.text
            assert first.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
            again = await client.post("/api/calls/1/negotiate", json={"carrier_offer": 2500})
            assert again.status_code == 201, again.text
        else:
            assert first.status_code == 201, first.text
    stored = await dbutil.execute(postgres_url, select(rounds.c.round_number))
    assert [row.round_number for row in stored] == [1] and len(failures) == 1


@pytest.mark.postgres
async def test_a_round_number_taken_meanwhile_fails_the_shared_write_whole(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call's own negotiation is guarded by the unique index on its round numbers: when one
    row of the shared statement takes a number recorded meanwhile (here: a context read before
    call 1's first round), the statement fails whole, nothing of it is written (call 2's round,
    the counts) and every round it carried is recorded on its own, as if it had been alone."""
    contexts = recording.round_contexts
    outcomes: list[str] = []

    def stale_for_call_1(conn: Any, negotiations: list[Any]) -> list[Any]:
        found = contexts(conn, negotiations)
        return [
            row._replace(round_number=None, decision=None, counter_offer=None)
            if len(negotiations) > 1 and row is not None and row.id == 1
            else row
            for row in found
        ]

    class Watched:
        def all(self, conn: Any, params: dict[str, Any]) -> list[Any]:
            try:
                rows = RECORD_TOGETHER.all(conn, params)
            except DBAPIError as exc:
                outcomes.append(type(exc).__name__)
                raise
            outcomes.append(f"{len(rows)} rows")
            return rows

    monkeypatch.setattr(recording, "round_contexts", stale_for_call_1)
    monkeypatch.setattr(recording, "RECORD_TOGETHER", Watched())
    app = create_app(Settings(database_url=postgres_url, api_keys=(API_KEY,)))
    async with concurrent_client(app) as (client, _):
        await seed_calls(client, calls=2)
        first = await client.post("/api/calls/1/negotiate", json={"carrier_offer": 2500})
        assert first.status_code == 201, first.text
        body = {"carrier_offer": 2400}
        answers = await asyncio.gather(
            *(client.post(f"/api/calls/{n}/negotiate", json=body) for n in (1, 2))
        )
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    assert [a.json()["round_number"] for a in answers] == [2, 1]
    assert outcomes == ["IntegrityError"]
    stored = await dbutil.execute(
        postgres_url, select(rounds.c.call_id, rounds.c.round_number).order_by(rounds.c.id)
    )
    assert [tuple(row) for row in stored] == [(1, 1), (1, 2), (2, 1)]
    counted = await dbutil.execute(
        postgres_url, select(calls.c.id, calls.c.negotiation_rounds).order_by(calls.c.id)
    )
    assert [tuple(row) for row in counted] == [(1, 2), (2, 1)]


@pytest.mark.postgres
async def test_a_shared_write_waits_for_its_locks_before_writing(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two shared writes that meet on two sessions, one still unseen for the first and being
    registered by the second, take them in one order: the first waits for the second before
    touching either, rather than holding the open session while it waits for the unseen one
    (the second, here a transaction doing what a shared write does, then needs the open one:
    a deadlock, which PostgreSQL breaks only after ``deadlock_timeout``, 1 s)."""
    sizes: list[int] = []

    class Counted:
        def all(self, conn: Any, params: dict[str, Any]) -> list[Any]:
            sizes.append(len(params["a_item"]))
            return RECORD_TOGETHER.all(conn, params)

    monkeypatch.setattr(recording, "RECORD_TOGETHER", Counted())
    app = create_app(Settings(database_url=postgres_url, api_keys=(API_KEY,)))
    engine = create_async_engine(normalize_url(postgres_url, asynchronous=True))
    try:
        async with concurrent_client(app) as (client, _), engine.connect() as other:
            await seed_calls(client, calls=2, sessions=("s-open",), one_load_each=True)
            await other.begin()
            await other.execute(
                text(
                    "SELECT count(pg_advisory_xact_lock(:space, key)) FROM (SELECT hashtext(id)"
                    " AS key FROM unnest(ARRAY['s-open', 's-new']) AS id ORDER BY key) AS k"
                ),
                {"space": SESSION_KEYS},
            )
            await other.execute(
                insert(sessions).values(
                    session_id="s-new", status="active", ttl_seconds=3600, created_at=START,
                    last_activity=START, expires_at=START + dt.timedelta(days=365),
                )
            )  # fmt: skip
            offers = asyncio.gather(
                *(
                    client.post(f"/api/calls/{n}/negotiate", json={"carrier_offer": 2500} | s)
                    for n, s in ((1, {"session_id": "s-new"}), (2, {"session_id": "s-open"}))
                )
            )
            await dbutil.wait_for_row(
                postgres_url,
                "SELECT 1 FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            assert sizes == [2], sizes  # the two offers went together, and wait
            await other.execute(text("SET LOCAL lock_timeout = '500ms'"))
            await other.execute(
                update(sessions).where(sessions.c.session_id == "s-open").values(client_id="x")
            )
            await other.commit()
            answers = await offers
    finally:
        await engine.dispose()
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    stored = await dbutil.execute(
        postgres_url, select(rounds.c.call_id, rounds.c.session_id).order_by(rounds.c.call_id)
    )
    assert [tuple(row) for row in stored] == [(1, "s-new"), (2, "s-open")]
