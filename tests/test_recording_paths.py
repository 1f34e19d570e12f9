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
from sqlalchemy import select

from negotiation import recording
from negotiation.app import create_app
from negotiation.queries import calls, loads, rounds, sessions
from negotiation.settings import Settings
from tests import dbutil
from tests.conftest import API_KEY, Clock
from tests.helpers import seed_calls

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

    def unlocked_told(conn: Any, o: Any) -> Any:
        counts["unlocked"] += 1
        offers.append(o)
        tries[id(o)] = tries.get(id(o), 0) + 1
        return recording._CHANGED if tries[id(o)] <= tries_refused else unlocked(conn, o)

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
