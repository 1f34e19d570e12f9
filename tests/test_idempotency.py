"""Idempotency-Key on POST /api/calls/{id}/negotiate and POST /api/sessions, on both databases.

A replay repeats the first response byte for byte and records nothing; another body under the
same key is 422; a request whose claim is still live is 409; a dead claim (a crashed server's)
is taken over once its lease runs out. Time is the app's injected clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from negotiation.app import create_app
from negotiation.settings import Settings
from tests import dbutil
from tests.conftest import API_KEY, LOAD, Clock
from tests.helpers import concurrent_client, with_settings

Client = AsyncTestClient[Litestar]
START = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
ABOVE_CEILING = 2500  # loadboard 2000, ceiling 2200: a counter in rounds 1-2, a reject in round 3


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@asynccontextmanager
async def client_for(
    settings: Settings, clock: Clock, api_key: str = API_KEY, **overrides: Any
) -> AsyncIterator[Client]:
    app = create_app(with_settings(settings, **overrides), clock=clock)
    async with AsyncTestClient(app) as c:
        c.headers["X-API-Key"] = api_key
        yield c


async def new_call(c: Any, load_id: str = "LD-IDEM") -> int:
    if (await c.get(f"/api/loads/{load_id}")).status_code == 404:
        assert (await c.post("/api/loads", json={**LOAD, "load_id": load_id})).status_code == 201
    r = await c.post("/api/calls", json={"load_id": load_id})
    assert r.status_code == 201, r.text
    call_id: int = r.json()["id"]
    return call_id


def negotiate(c: Any, call: int, key: str | None, **body: Any) -> Any:
    # Sent as latin-1 bytes, as a client may: the service must refuse non-ASCII keys itself.
    headers = {"Idempotency-Key": key.encode("latin-1")} if key is not None else {}
    payload = {"carrier_offer": ABOVE_CEILING, **body}
    return c.post(f"/api/calls/{call}/negotiate", json=payload, headers=headers)


async def round_count(database_url: str, call_id: int) -> int:
    rows = await dbutil.execute(
        database_url, "SELECT count(*) FROM negotiations WHERE call_id = :c", c=call_id
    )
    return int(rows[0][0])


async def test_replay_repeats_the_first_response_and_records_nothing(
    settings: Settings, clock: Clock, database_url: str
) -> None:
    async with client_for(settings, clock) as c:
        call_id = await new_call(c)
        first = await negotiate(c, call_id, "retry-1", session_id="s-idem")
        assert first.status_code == 201, first.text
        assert "Idempotent-Replayed" not in first.headers
        clock.advance(5)
        again = await negotiate(c, call_id, "retry-1", session_id="s-idem")
        assert again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.content == first.content
        assert again.headers["X-Session-ID"] == "s-idem"
        assert await round_count(database_url, call_id) == 1
        assert (await c.get(f"/api/calls/{call_id}")).json()["negotiation_rounds"] == 1
        # The same body as "the same request": whitespace and number spelling do not matter.
        spelled = await c.post(
            f"/api/calls/{call_id}/negotiate",
            content=b'{ "session_id": "s-idem", "carrier_offer": 2500.00 }',
            headers={"Idempotency-Key": "retry-1", "Content-Type": "application/json"},
        )
        assert spelled.status_code == 201 and spelled.content == first.content
        # Without a key, or with a new one, the next offer is a new round.
        assert (await negotiate(c, call_id, None, session_id="s-idem")).json()["round_number"] == 2
        assert (await negotiate(c, call_id, "retry-2", session_id="s-idem")).json()[
            "round_number"
        ] == 3
        assert await round_count(database_url, call_id) == 3


async def test_same_key_with_another_body_or_route_is_422(
    settings: Settings, clock: Clock, database_url: str
) -> None:
    async with client_for(settings, clock) as c:
        call_id = await new_call(c)
        assert (await negotiate(c, call_id, "k-1")).status_code == 201
        for response in (
            await negotiate(c, call_id, "k-1", carrier_offer=2400),
            await negotiate(c, call_id, "k-1", notes="changed"),
            await c.post("/api/sessions", json={}, headers={"Idempotency-Key": "k-1"}),
        ):
            assert response.status_code == 422, response.text
            assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert await round_count(database_url, call_id) == 1
        assert (await c.get("/api/sessions")).json()["items"] == [], "no session created"


async def test_keys_are_scoped_to_the_api_key(
    settings: Settings, clock: Clock, database_url: str
) -> None:
    keys = {"api_keys": ("key-a", "key-b")}
    async with (
        client_for(settings, clock, api_key="key-a", **keys) as a,
        client_for(settings, clock, api_key="key-b", **keys) as b,
    ):
        call_id = await new_call(a)
        first = await negotiate(a, call_id, "shared-key")
        second = await negotiate(b, call_id, "shared-key")
        assert (first.status_code, second.status_code) == (201, 201)
        assert "Idempotent-Replayed" not in second.headers
        assert [first.json()["round_number"], second.json()["round_number"]] == [1, 2]
        assert (await negotiate(b, call_id, "shared-key")).headers["Idempotent-Replayed"] == "true"
        assert await round_count(database_url, call_id) == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\tkey"])
async def test_invalid_keys_are_422_and_record_nothing(
    client: Client, make_call: Any, database_url: str, key: str
) -> None:
    call = await make_call()
    r = await negotiate(client, call["id"], key)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "Idempotency-Key" in str(r.json()["error"])
    assert await round_count(database_url, call["id"]) == 0
    assert (await negotiate(client, call["id"], "x" * 255)).status_code == 201
    assert (await negotiate(client, call["id"], " ~!printable ASCII ok")).status_code == 201


async def test_outcomes_decided_by_the_data_are_stored_and_replayed(
    client: Client, make_call: Any, database_url: str
) -> None:
    call = await make_call()
    assert (await negotiate(client, call["id"], None, carrier_offer=1900)).json()["accepted"]
    closed = await negotiate(client, call["id"], "after-accept")
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "NEGOTIATION_CLOSED"
    replay = await negotiate(client, call["id"], "after-accept")
    assert replay.status_code == 409 and replay.content == closed.content
    assert replay.headers["Idempotent-Replayed"] == "true"

    missing = await client.post(
        "/api/calls/999999/negotiate",
        json={"carrier_offer": 2000},
        headers={"Idempotency-Key": "no-call"},
    )
    assert missing.status_code == 404
    again = await client.post(
        "/api/calls/999999/negotiate",
        json={"carrier_offer": 2000},
        headers={"Idempotency-Key": "no-call"},
    )
    assert again.content == missing.content and again.headers["Idempotent-Replayed"] == "true"

    taken = {"session_id": "taken-1"}
    assert (await client.post("/api/sessions", json=taken)).status_code == 201
    exists = await client.post("/api/sessions", json=taken, headers={"Idempotency-Key": "s-1"})
    assert exists.status_code == 409 and exists.json()["error"]["code"] == "SESSION_EXISTS"
    again = await client.post("/api/sessions", json=taken, headers={"Idempotency-Key": "s-1"})
    assert again.content == exists.content and again.headers["X-Session-ID"] == "taken-1"
    assert await round_count(database_url, call["id"]) == 1


async def test_a_refused_unit_leaves_nothing_but_its_stored_answer(
    client: Client, make_call: Any, database_url: str
) -> None:
    """A unit that wrote (registered a session) and then refused is rolled back to the claim."""
    call = await make_call()
    await negotiate(client, call["id"], None, carrier_offer=1900, session_id="done-1")
    r = await negotiate(client, call["id"], "late", session_id="done-1")
    assert r.status_code == 409
    got = (await client.get("/api/sessions/done-1")).json()
    assert got["stats"]["round_count"] == 1


async def test_request_errors_do_not_use_up_the_key(
    client: Client, make_call: Any, database_url: str
) -> None:
    call = await make_call()
    for bad in (
        negotiate(client, call["id"], "fix-me", carrier_offer=-5),
        negotiate(client, call["id"], "fix-me", session_id="bad id"),
        negotiate(client, call["id"], "fix-me", call_id=call["id"] + 1),
    ):
        assert (await bad).status_code == 422
    r = await negotiate(client, call["id"], "fix-me")
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    assert await round_count(database_url, call["id"]) == 1


async def test_a_dead_claim_is_409_until_its_lease_runs_out_then_taken_over(
    settings: Settings, clock: Clock, database_url: str
) -> None:
    """A claim whose request died before recording (crash, SIGKILL): 409, then taken over."""
    async with client_for(
        settings, clock, idempotency_lease_seconds=30, idempotency_wait_ms=0
    ) as c:
        call_id = await new_call(c)
        assert (await negotiate(c, call_id, "dead-1")).status_code == 201
        # Turn the completed request into one that claimed the key and died before recording.
        await dbutil.execute(database_url, "DELETE FROM negotiations WHERE call_id = :c", c=call_id)
        await dbutil.execute(
            database_url,
            "UPDATE idempotency_keys SET response_status = NULL, response_body = NULL "
            "WHERE key = 'dead-1'",
        )
        busy = await negotiate(c, call_id, "dead-1")
        assert busy.status_code == 409, busy.text
        assert busy.json()["error"]["code"] == "REQUEST_IN_PROGRESS"
        assert busy.headers["Retry-After"] == "1"
        assert (await negotiate(c, call_id, "dead-1", carrier_offer=2400)).status_code == 422
        clock.advance(29)
        assert (await negotiate(c, call_id, "dead-1")).status_code == 409
        clock.advance(1)
        taken = await negotiate(c, call_id, "dead-1")
        assert taken.status_code == 201 and "Idempotent-Replayed" not in taken.headers
        assert taken.json()["round_number"] == 1
        replay = await negotiate(c, call_id, "dead-1")
        assert replay.content == taken.content
        assert await round_count(database_url, call_id) == 1


async def test_keys_expire_after_the_retention_and_are_cleaned_up(
    settings: Settings, clock: Clock, database_url: str
) -> None:
    async with client_for(settings, clock, idempotency_retention_seconds=3600) as c:
        call_id = await new_call(c)
        for key in ("old-1", "old-2"):
            assert (await negotiate(c, call_id, key)).status_code == 201
        clock.advance(3599)
        assert (await negotiate(c, call_id, "old-1")).headers["Idempotent-Replayed"] == "true"
        clock.advance(1)
        # Expired: the key is free again, and claiming any key deletes expired rows.
        reused = await negotiate(c, call_id, "old-1", carrier_offer=2450)
        assert reused.status_code == 201 and reused.json()["round_number"] == 3
        rows = await dbutil.execute(database_url, "SELECT key FROM idempotency_keys")
        assert sorted(r[0] for r in rows) == ["old-1"]


async def test_twenty_concurrent_identical_requests_record_one_round(
    settings: Settings, clock: Clock, database_url: str
) -> None:
    app = create_app(with_settings(settings, idempotency_wait_ms=30_000), clock=clock)
    async with concurrent_client(app) as (c, _):
        call_id = await new_call(c)
        responses = await asyncio.gather(*(negotiate(c, call_id, "same-20") for _ in range(20)))
        assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]
        assert len({r.content for r in responses}) == 1, "identical bodies"
        assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 19
        assert await round_count(database_url, call_id) == 1

        sessions = await asyncio.gather(
            *(
                c.post("/api/sessions", json={}, headers={"Idempotency-Key": "one-session"})
                for _ in range(20)
            )
        )
        assert [r.status_code for r in sessions] == [201] * 20
        assert len({r.content for r in sessions}) == 1
        assert len((await c.get("/api/sessions")).json()["items"]) == 1


async def test_concurrent_duplicates_without_waiting_get_409_or_the_replay(
    settings: Settings, clock: Clock, database_url: str
) -> None:
    app = create_app(with_settings(settings, idempotency_wait_ms=0), clock=clock)
    async with concurrent_client(app) as (c, _):
        call_id = await new_call(c)
        responses = await asyncio.gather(*(negotiate(c, call_id, "dup") for _ in range(20)))
        winners = [r for r in responses if r.status_code == 201]
        others = [r for r in responses if r.status_code != 201]
        assert winners and len({r.content for r in winners}) == 1
        assert all(r.json()["error"]["code"] == "REQUEST_IN_PROGRESS" for r in others)
        assert (await negotiate(c, call_id, "dup")).content == winners[0].content
        assert await round_count(database_url, call_id) == 1


async def waiting_for_locks(url: str, count: int) -> None:
    """Until ``count`` sessions on the PostgreSQL database at ``url`` wait for a lock."""
    await dbutil.wait_for_row(
        url,
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' HAVING count(*) >= :count",
        count=count,
    )


@pytest.mark.postgres
async def test_a_retry_waits_for_the_running_first_request_then_replays(
    postgres_url: str, clock: Clock
) -> None:
    """The first request is held in the database by a row lock; its retry waits, then replays.

    Both waits are seen in ``pg_stat_activity``: the first request, its key claimed, waits for
    the call's row (holding its key's row); then the retry waits for the first. The locks are
    held until the test lets go, whatever the machine's speed (no lock timeout in between).
    """
    database_url = postgres_url
    settings = Settings(database_url=postgres_url, api_keys=(API_KEY,))
    app = create_app(
        with_settings(settings, idempotency_wait_ms=30_000, lock_timeout_ms=0), clock=clock
    )
    async with concurrent_client(app) as (c, _):
        call_id = await new_call(c)
        async with dbutil.locked_row(database_url, "calls", call_id):
            first = asyncio.ensure_future(negotiate(c, call_id, "held"))
            await waiting_for_locks(database_url, 1)
            retry = asyncio.ensure_future(negotiate(c, call_id, "held"))
            await waiting_for_locks(database_url, 2)
            assert not first.done() and not retry.done()
        first_response, retry_response = await first, await retry
        assert first_response.status_code == retry_response.status_code == 201
        assert retry_response.content == first_response.content
        assert retry_response.headers["Idempotent-Replayed"] == "true"
        assert await round_count(database_url, call_id) == 1


@pytest.mark.postgres
async def test_a_5xx_is_not_stored_and_frees_the_key(postgres_url: str, clock: Clock) -> None:
    """T2 fails (a lock held elsewhere, PostgreSQL only) after the claim: nothing is kept."""
    database_url = postgres_url
    settings = Settings(database_url=postgres_url, api_keys=(API_KEY,))
    async with client_for(settings, clock, lock_timeout_ms=50, db_retries=1) as c:
        call_id = await new_call(c)
        async with dbutil.locked_row(database_url, "calls", call_id):
            busy = await negotiate(c, call_id, "after-busy")
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "DATABASE_BUSY"
        assert busy.headers["Retry-After"]
        rows = await dbutil.execute(database_url, text("SELECT count(*) FROM idempotency_keys"))
        assert rows[0][0] == 0, "the claim was released"
        done = await negotiate(c, call_id, "after-busy")
        assert done.status_code == 201 and "Idempotent-Replayed" not in done.headers
        assert await round_count(database_url, call_id) == 1
