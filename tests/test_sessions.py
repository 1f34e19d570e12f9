"""Sessions as a resource: ids, create/read/list/close/purge, expiry, strict mode, propagation.

Every test runs on SQLite and PostgreSQL (the ``client`` fixture). Time is the app's injected
clock, so expiry is tested by moving the clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import create_async_engine

from negotiation.app import create_app
from negotiation.db import normalize_url
from negotiation.queries import sessions
from negotiation.settings import Settings
from tests.conftest import API_KEY, LOAD, Clock
from tests.helpers import concurrent_client

Client = AsyncTestClient[Litestar]
MakeCall = Callable[..., Awaitable[dict[str, Any]]]

START = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
GENERATED = re.compile(r"sess_(\d{14})_[0-9a-f]{16,}")
INVALID_IDS = ["a b", "x" * 129, "../x", ""]


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def app(settings: Settings, clock: Clock) -> Litestar:
    return create_app(settings, clock=clock)


@asynccontextmanager
async def client_for(settings: Settings, clock: Clock) -> AsyncIterator[Client]:
    async with AsyncTestClient(create_app(settings, clock=clock)) as c:
        c.headers["X-API-Key"] = API_KEY
        yield c


def iso(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


async def offer(client: Client, call_id: int, amount: float, session_id: str | None = None) -> Any:
    body: dict[str, Any] = {"carrier_offer": amount}
    if session_id is not None:
        body["session_id"] = session_id
    return await client.post(f"/api/calls/{call_id}/negotiate", json=body)


async def test_generated_id_without_body_or_with_empty_object(client: Client) -> None:
    for r in (await client.post("/api/sessions"), await client.post("/api/sessions", json={})):
        assert r.status_code == 201, r.text
        body = r.json()
        match = GENERATED.fullmatch(body["session_id"])
        assert match, body["session_id"]
        assert match.group(1) == START.strftime("%Y%m%d%H%M%S")
        assert r.headers["X-Session-ID"] == body["session_id"]
        assert body["status"] == "active"
        assert body["client_id"] is None and body["metadata"] is None
        assert iso(body["created_at"]) == iso(body["last_activity"]) == START
        assert iso(body["expires_at"]) == START + dt.timedelta(seconds=3600)
    r = await client.get("/api/sessions")
    assert len(r.json()["items"]) == 2


async def test_custom_id_is_used_as_is_and_case_sensitive(client: Client) -> None:
    payload = {
        "session_id": "crm_user_12345",
        "client_id": "acme-crm",
        "metadata": {"agent": "voice-1", "tags": ["vip"], "nested": {"n": 1}},
        "ttl_seconds": 600,
    }
    r = await client.post("/api/sessions", json=payload)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["session_id"] == "crm_user_12345"
    assert created["client_id"] == "acme-crm"
    assert created["metadata"] == payload["metadata"]
    assert created["ttl_seconds"] == 600
    assert iso(created["expires_at"]) == START + dt.timedelta(seconds=600)

    r = await client.get("/api/sessions/crm_user_12345")
    assert r.status_code == 200
    assert {k: v for k, v in r.json().items() if k != "stats"} == created

    r = await client.post("/api/sessions", json={"session_id": "CRM_USER_12345"})
    assert r.status_code == 201, "ids differing only in case are different sessions"
    uuid_like = "6f1c2a9e-3b4d-4c5e-8f70-123456789abc"
    assert (await client.post("/api/sessions", json={"session_id": uuid_like})).status_code == 201
    assert (await client.post("/api/sessions", json={"session_id": "x" * 128})).status_code == 201


async def test_duplicate_id_is_409_and_the_first_session_is_untouched(
    client: Client, clock: Clock
) -> None:
    first = await client.post(
        "/api/sessions", json={"session_id": "dup-1", "client_id": "a", "metadata": {"v": 1}}
    )
    assert first.status_code == 201
    clock.advance(5)
    r = await client.post(
        "/api/sessions", json={"session_id": "dup-1", "client_id": "b", "metadata": {"v": 2}}
    )
    assert r.status_code == 409
    body = r.json()
    assert body["error"]["code"] == "SESSION_EXISTS"
    assert body["error"]["message"] == (
        "Session ID 'dup-1' already exists. Please use a different ID or omit it for "
        "auto-generation."
    )
    assert body["session_id"] == "dup-1" and r.headers["X-Session-ID"] == "dup-1"
    again = (await client.get("/api/sessions/dup-1")).json()
    assert {k: v for k, v in again.items() if k != "stats"} == first.json()


async def test_concurrent_creates_of_one_id_give_exactly_one_201(settings: Settings) -> None:
    async with concurrent_client(create_app(settings)) as (c, _):
        # Open the pool's connections first, so the creates reach the database together.
        await asyncio.gather(*(c.get("/api/sessions/warm-up") for _ in range(8)))
        responses = await asyncio.gather(
            *(
                c.post("/api/sessions", json={"session_id": "race-1", "client_id": f"c{i}"})
                for i in range(8)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * 7, [r.text for r in responses]
        winner = next(r.json() for r in responses if r.status_code == 201)
        stored = (await c.get("/api/sessions/race-1")).json()
        assert stored["client_id"] == winner["client_id"]


async def test_concurrent_first_rounds_register_an_unseen_session_once(settings: Settings) -> None:
    async with concurrent_client(create_app(settings)) as (c, _):
        calls = []
        for n in range(6):  # one load each: six negotiations of one session
            assert (await c.post("/api/loads", json={**LOAD, "load_id": f"LD-{n}"})).is_success
            calls.append((await c.post("/api/calls", json={"load_id": f"LD-{n}"})).json())
        responses = await asyncio.gather(
            *(
                c.post(
                    f"/api/calls/{x['id']}/negotiate",
                    json={"carrier_offer": 2500, "session_id": "fresh-1"},
                )
                for x in calls
            )
        )
        assert [r.status_code for r in responses] == [201] * 6, [r.text for r in responses]
        stats = (await c.get("/api/sessions/fresh-1")).json()["stats"]
        assert stats["round_count"] == 6
        assert sorted(stats["call_ids"]) == sorted(x["id"] for x in calls)


async def test_purge_racing_new_rounds_stays_consistent(settings: Settings) -> None:
    async with concurrent_client(create_app(settings)) as (c, _):
        calls = []
        for n in range(4):  # one load each: four negotiations of one session
            assert (await c.post("/api/loads", json={**LOAD, "load_id": f"LD-P{n}"})).is_success
            calls.append((await c.post("/api/calls", json={"load_id": f"LD-P{n}"})).json())
        for x in calls:
            r = await c.post(
                f"/api/calls/{x['id']}/negotiate", json={"carrier_offer": 2500, "session_id": "p"}
            )
            assert r.status_code == 201
        work = [c.delete("/api/sessions/p?purge=true")]
        for x in calls:
            url = f"/api/calls/{x['id']}/negotiate"
            work += [
                c.post(url, json={"carrier_offer": 2450, "session_id": "p"}),
                c.post(url, json={"carrier_offer": 2450}),
            ]
        responses = await asyncio.gather(*work)
        assert all(r.status_code < 500 for r in responses), [r.text for r in responses]
        assert responses[0].json()["purged_rounds"] >= 4
        for x in calls:
            recorded = (await c.get(f"/api/calls/{x['id']}/negotiations")).json()
            call = (await c.get(f"/api/calls/{x['id']}")).json()
            assert call["negotiation_rounds"] == len(recorded)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"metadata": ["not", "an", "object"]}, "metadata"),
        ({"metadata": "text"}, "metadata"),
        ({"metadata": {"blob": "x" * 17_000}}, "bytes"),
        ({"metadata": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}}, "nest"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"client_id": ""}, "client_id"),
        ({"sesion_id": "typo"}, "sesion_id"),
    ],
)
async def test_bad_create_bodies_are_422(
    client: Client, payload: dict[str, Any], fragment: str
) -> None:
    r = await client.post("/api/sessions", json=payload)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert fragment in body["error"]["message"] + str(body["error"]["details"])
    assert (await client.get("/api/sessions")).json()["items"] == []


async def test_metadata_within_limits_is_stored(client: Client) -> None:
    metadata = {"a": {"b": {"c": {"d": {"e": {"f": {"g": "deep"}}}}}}, "blob": "x" * 15_000}
    r = await client.post("/api/sessions", json={"metadata": metadata})
    assert r.status_code == 201, r.text
    got = (await client.get(f"/api/sessions/{r.json()['session_id']}")).json()
    assert got["metadata"] == metadata


async def test_stats_after_three_rounds_across_two_calls(
    client: Client, make_load: Any, make_call: MakeCall
) -> None:
    await make_load("LD-S1", loadboard_rate=2000)
    first_call = await make_call("LD-S1")
    second_call = await make_call("LD-S1")
    assert (await client.post("/api/sessions", json={"session_id": "deal-7"})).status_code == 201

    r1 = await offer(client, first_call["id"], 2500, "deal-7")
    r2 = await offer(client, first_call["id"], 2400, "deal-7")
    # The first call dropped; the carrier calls back and the session continues on a new call.
    r3 = await offer(client, second_call["id"], 1990, "deal-7")
    assert [r.status_code for r in (r1, r2, r3)] == [201, 201, 201]
    assert [r.json()["decision"] for r in (r1, r2, r3)] == ["counter", "counter", "accept"]

    r = await client.get("/api/sessions/deal-7")
    assert r.status_code == 200
    assert r.headers["X-Session-ID"] == "deal-7"
    assert r.json()["stats"] == {
        "round_count": 3,
        "call_ids": [first_call["id"], second_call["id"]],
        "last_offer": 1990.0,
        "last_counter_offer": r2.json()["counter_offer"],
        "last_decision": "accept",
        "agreed_rate": 1990.0,
    }
    empty = (await client.post("/api/sessions")).json()["session_id"]
    assert (await client.get(f"/api/sessions/{empty}")).json()["stats"] == {
        "round_count": 0,
        "call_ids": [],
        "last_offer": None,
        "last_counter_offer": None,
        "last_decision": None,
        "agreed_rate": None,
    }


async def test_every_round_updates_last_activity(
    client: Client, clock: Clock, make_call: MakeCall
) -> None:
    call = await make_call()
    await client.post("/api/sessions", json={"session_id": "act-1", "ttl_seconds": 100})
    clock.advance(40)
    assert (await offer(client, call["id"], 2500, "act-1")).status_code == 201
    got = (await client.get("/api/sessions/act-1")).json()
    assert iso(got["created_at"]) == START
    assert iso(got["last_activity"]) == clock.now
    assert iso(got["expires_at"]) == clock.now + dt.timedelta(seconds=100)


async def test_close_keeps_history_and_refuses_new_rounds(
    client: Client, make_call: MakeCall
) -> None:
    call = await make_call()
    await client.post("/api/sessions", json={"session_id": "close-me"})
    assert (await offer(client, call["id"], 2500, "close-me")).status_code == 201

    r = await client.delete("/api/sessions/close-me")
    assert r.status_code == 200
    assert r.json() == {"session_id": "close-me", "status": "closed"}
    assert r.headers["X-Session-ID"] == "close-me"
    assert (await client.delete("/api/sessions/close-me")).status_code == 200

    r = await offer(client, call["id"], 2400, "close-me")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "SESSION_CLOSED"
    assert r.json()["session_id"] == "close-me"
    got = (await client.get("/api/sessions/close-me")).json()
    assert got["status"] == "closed" and got["stats"]["round_count"] == 1
    assert len((await client.get("/api/negotiations/session/close-me")).json()) == 1
    assert (await offer(client, call["id"], 2400)).status_code == 201, "other negotiations go on"

    r = await client.delete("/api/sessions/never-was")
    assert r.status_code == 404 and r.json()["error"]["code"] == "SESSION_NOT_FOUND"


async def test_purge_deletes_session_and_rounds_then_404(
    client: Client, make_call: MakeCall
) -> None:
    call = await make_call()
    await client.post("/api/sessions", json={"session_id": "gone"})
    assert (await offer(client, call["id"], 2500, "gone")).status_code == 201
    assert (await offer(client, call["id"], 2450, "gone")).status_code == 201
    assert (await offer(client, call["id"], 2500, "kept")).status_code == 201

    r = await client.delete("/api/sessions/gone", params={"purge": "true"})
    assert r.status_code == 200
    assert r.json() == {"session_id": "gone", "purged_rounds": 2}

    for path in ("/api/sessions/gone", "/api/negotiations/session/gone"):
        r = await client.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "SESSION_NOT_FOUND"
    assert (await client.delete("/api/sessions/gone?purge=true")).status_code == 404
    assert (await client.get("/api/sessions/kept")).json()["stats"]["round_count"] == 1
    assert (await client.get(f"/api/calls/{call['id']}")).json()["negotiation_rounds"] == 1
    ids = [s["session_id"] for s in (await client.get("/api/sessions")).json()["items"]]
    assert ids == ["kept"]


async def test_expiry_after_ttl_without_activity(
    client: Client, clock: Clock, make_call: MakeCall
) -> None:
    call = await make_call()
    await client.post("/api/sessions", json={"session_id": "short", "ttl_seconds": 60})
    clock.advance(59)
    assert (await offer(client, call["id"], 2500, "short")).status_code == 201
    clock.advance(59)  # 118 s after creation, but only 59 s after the last round
    assert (await offer(client, call["id"], 2450, "short")).status_code == 201
    clock.advance(60)
    r = await offer(client, call["id"], 2400, "short")
    assert r.status_code == 410
    assert r.json()["error"]["code"] == "SESSION_EXPIRED"
    assert r.headers["X-Session-ID"] == "short"

    assert (await client.get("/api/sessions/short")).json()["status"] == "expired"
    by_status = {
        status: [
            s["session_id"]
            for s in (await client.get(f"/api/sessions?status={status}")).json()["items"]
        ]
        for status in ("active", "expired", "closed")
    }
    assert by_status == {"active": [], "expired": ["short"], "closed": []}
    await client.post("/api/sessions", json={"session_id": "fresh"})
    await client.delete("/api/sessions/short")
    actives = (await client.get("/api/sessions?status=active")).json()["items"]
    closed = (await client.get("/api/sessions?status=closed")).json()["items"]
    assert [s["session_id"] for s in actives] == ["fresh"]
    assert [s["session_id"] for s in closed] == ["short"]


async def test_registered_session_uses_the_ttl_setting(settings: Settings, clock: Clock) -> None:
    async with client_for(settings.model_copy(update={"session_ttl_seconds": 30}), clock) as c:
        await c.post("/api/loads", json={**LOAD, "load_id": "LD-TTL"})
        call = (await c.post("/api/calls", json={"load_id": "LD-TTL"})).json()
        assert (await offer(c, call["id"], 2500, "auto-ttl")).status_code == 201
        got = (await c.get("/api/sessions/auto-ttl")).json()
        assert got["ttl_seconds"] == 30 and got["status"] == "active"
        clock.advance(30)
        assert (await offer(c, call["id"], 2400, "auto-ttl")).status_code == 410


async def test_strict_mode_needs_created_sessions(settings: Settings, clock: Clock) -> None:
    async with client_for(settings.model_copy(update={"require_sessions": True}), clock) as c:
        await c.post("/api/loads", json={**LOAD, "load_id": "LD-STRICT"})
        call = (await c.post("/api/calls", json={"load_id": "LD-STRICT"})).json()
        r = await offer(c, call["id"], 2500, "not-created")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "SESSION_NOT_FOUND"
        assert r.json()["session_id"] == "not-created"
        assert (await c.get("/api/sessions/not-created")).status_code == 404

        created = (await c.post("/api/sessions")).json()["session_id"]
        assert (await offer(c, call["id"], 2500, created)).status_code == 201
        assert (await offer(c, call["id"], 2500)).status_code == 201, "no session: unaffected"


async def test_default_mode_registers_unseen_ids(client: Client, make_call: MakeCall) -> None:
    call = await make_call()
    assert (await offer(client, call["id"], 2500, "client-made-1")).status_code == 201
    got = await client.get("/api/sessions/client-made-1")
    assert got.status_code == 200
    assert got.json()["status"] == "active" and got.json()["stats"]["round_count"] == 1


async def test_session_known_only_from_rounds_is_found(
    client: Client, database_url: str, make_call: MakeCall
) -> None:
    call = await make_call()
    assert (await offer(client, call["id"], 2500, "legacy-1")).status_code == 201
    # Rounds written before sessions were recorded: the rows exist, the session row does not.
    engine = create_async_engine(normalize_url(database_url, asynchronous=True))
    async with engine.begin() as conn:
        await conn.execute(delete(sessions).where(sessions.c.session_id == "legacy-1"))
    await engine.dispose()
    got = await client.get("/api/sessions/legacy-1")
    assert got.status_code == 200, got.text
    assert got.json()["stats"]["round_count"] == 1
    assert got.json()["created_at"] is not None and got.json()["client_id"] is None

    r = await client.post("/api/sessions", json={"session_id": "legacy-1"})
    assert r.status_code == 409, "an id already used by rounds is taken"
    assert (await client.delete("/api/sessions/legacy-1")).status_code == 200
    assert (await offer(client, call["id"], 2400, "legacy-1")).status_code == 409


async def test_list_newest_activity_first_with_cursor_and_round_counts(
    client: Client, clock: Clock, make_call: MakeCall
) -> None:
    call = await make_call()
    for i, client_id in enumerate(["crm", "app", "crm", "crm"]):
        await client.post("/api/sessions", json={"session_id": f"s{i}", "client_id": client_id})
        clock.advance(10)
    assert (await offer(client, call["id"], 2500, "s1")).status_code == 201
    assert (await offer(client, call["id"], 2450, "s1")).status_code == 201

    seen: list[dict[str, Any]] = []
    url = "/api/sessions?limit=3"
    while True:
        page = (await client.get(url)).json()
        seen += page["items"]
        if page["next_cursor"] is None:
            break
        url = f"/api/sessions?limit=3&cursor={page['next_cursor']}"
    assert [s["session_id"] for s in seen] == ["s1", "s3", "s2", "s0"]
    assert [s["round_count"] for s in seen] == [2, 0, 0, 0]

    page = (await client.get("/api/sessions?client_id=crm&limit=2")).json()
    assert [s["session_id"] for s in page["items"]] == ["s3", "s2"]
    rest = (await client.get(f"/api/sessions?client_id=crm&cursor={page['next_cursor']}")).json()
    assert [s["session_id"] for s in rest["items"]] == ["s0"] and rest["next_cursor"] is None

    for bad in ("limit=0", "limit=1001", "status=sleeping", "cursor=bm9wZQ", "cursor=%21"):
        r = await client.get(f"/api/sessions?{bad}")
        assert r.status_code == 422, (bad, r.text)
    loads_cursor = (await client.get("/api/loads?limit=1")).json()["next_cursor"]
    r = await client.get(f"/api/sessions?cursor={loads_cursor}")
    assert r.json()["error"]["code"] == "INVALID_CURSOR"


async def test_session_id_is_echoed_on_success_and_error(
    client: Client, make_call: MakeCall, caplog: pytest.LogCaptureFixture
) -> None:
    call = await make_call()
    await client.post("/api/sessions", json={"session_id": "echo-1"})

    r = await offer(client, call["id"], 2500, "echo-1")
    assert r.status_code == 201 and r.headers["X-Session-ID"] == "echo-1"
    assert r.json()["session_id"] == "echo-1"

    # Named only in the body, and the body fails validation: still echoed.
    r = await offer(client, call["id"], -5, "echo-1")
    assert r.status_code == 422
    assert r.headers["X-Session-ID"] == "echo-1" and r.json()["session_id"] == "echo-1"

    r = await client.get("/api/sessions/missing-1")
    assert r.status_code == 404
    assert r.headers["X-Session-ID"] == "missing-1" and r.json()["session_id"] == "missing-1"

    r = await client.get("/api/negotiations", params={"session_id": "echo-1"})
    assert r.status_code == 200 and r.headers["X-Session-ID"] == "echo-1"

    r = await client.get("/api/loads/NOPE", headers={"X-Session-ID": "hdr-1"})
    assert r.status_code == 404
    assert r.headers["X-Session-ID"] == "hdr-1" and r.json()["session_id"] == "hdr-1"

    r = await client.get("/api/sessions", headers={"X-Session-ID": "bad id"})
    assert r.status_code == 422 and "X-Session-ID" not in r.headers
    assert r.json()["error"]["code"] == "INVALID_SESSION_ID"

    with caplog.at_level(logging.INFO, logger="negotiation.access"):
        await client.post("/api/sessions", json={"session_id": "logged-1"})
        await client.get("/api/sessions/logged-1")
    fields = [getattr(rec, "fields", {}) for rec in caplog.records]
    assert [f.get("session_id") for f in fields if f.get("path", "").startswith("/api/sessions")][
        -2:
    ] == ["logged-1", "logged-1"]


@pytest.mark.parametrize("bad", INVALID_IDS, ids=["space", "129-chars", "dot-dot-slash", "empty"])
async def test_invalid_session_ids_are_refused_everywhere(
    client: Client, make_call: MakeCall, bad: str
) -> None:
    call = await make_call()
    requests = [
        client.post("/api/sessions", json={"session_id": bad}),
        offer(client, call["id"], 2500, bad),
        client.get("/api/negotiations", params={"session_id": bad}),
        client.get(f"/api/calls/{call['id']}/negotiations", params={"session_id": bad}),
    ]
    if bad:  # an empty path segment is a different route, not an id
        segment = quote(bad, safe="")
        requests += [
            client.get(f"/api/sessions/{segment}"),
            client.delete(f"/api/sessions/{segment}"),
            client.delete(f"/api/sessions/{segment}?purge=true"),
            client.get(f"/api/negotiations/session/{segment}"),
        ]
    for r in [await request for request in requests]:
        assert r.status_code == 422, (r.request.method, r.request.url, r.text)
        assert r.json()["error"]["code"] == "INVALID_SESSION_ID"
        assert "X-Session-ID" not in r.headers and r.json()["session_id"] is None
    assert (await client.get("/api/sessions")).json()["items"] == []
