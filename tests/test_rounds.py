"""Negotiation rounds over HTTP: the seed's client flow, reading back, filters and pagination."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.conftest import LOAD
from tests.helpers import Client, assert_error, negotiate, offer_ok, parse_timestamp

Make = Callable[..., Awaitable[dict[str, Any]]]

ROUND_KEYS = {
    "id",
    "call_id",
    "session_id",
    "round_number",
    "carrier_offer",
    "decision",
    "counter_offer",
    "agreed_rate",
    "accepted",
    "is_final",
    "rounds_remaining",
    "system_response",
    "notes",
    "timestamp",
}
LINK = re.compile(r'^<([^>]+)>; rel="next"$')


async def test_seed_client_flow(client: Client, make_load: Make) -> None:
    """Create load, create call, three offers in a client-generated session, read back."""
    await make_load("LD001", loadboard_rate=2000)
    call = (await client.post("/api/calls", json={"load_id": "LD001"})).json()
    call_id = call["id"]
    session = "sess_20261121120000_0123456789abcdef0123"

    rounds = []
    for offer, notes in ((2500, "Initial offer"), (2300.10, "Came down"), (2150, "Final")):
        response = await client.post(
            f"/api/calls/{call_id}/negotiate",
            json={
                "call_id": str(call_id),
                "carrier_offer": offer,
                "session_id": session,
                "notes": notes,
            },
        )
        assert response.status_code == 201, response.text
        assert response.headers["x-session-id"] == session
        rounds.append(response.json())

    first, second, third = rounds
    assert set(first) == ROUND_KEYS
    assert first["call_id"] == call_id and first["session_id"] == session
    assert [r["round_number"] for r in rounds] == [1, 2, 3]
    assert [r["decision"] for r in rounds] == ["counter", "counter", "accept"]
    assert first["carrier_offer"] == 2500 and second["carrier_offer"] == 2300.1
    # L = 2000, C = 2200, N = 3: the limit rises 2066.66 -> 2133.33 -> 2200.
    assert (first["counter_offer"], second["counter_offer"]) == (2066, 2133)
    assert first["system_response"] == "We can do $2,066.00 on this load."
    assert (first["rounds_remaining"], second["rounds_remaining"]) == (2, 1)
    assert not first["accepted"] and not first["is_final"] and first["agreed_rate"] is None
    assert third["accepted"] and third["is_final"] and third["rounds_remaining"] == 0
    assert third["agreed_rate"] == 2150 and third["counter_offer"] is None
    assert "$2,150.00" in third["system_response"]
    assert first["notes"] == "Initial offer"
    stamps = [parse_timestamp(r["timestamp"]) for r in rounds]
    assert stamps == sorted(stamps)

    by_session = await client.get(f"/api/negotiations/session/{session}")
    assert by_session.status_code == 200
    assert by_session.headers["x-session-id"] == session
    assert "link" not in by_session.headers
    assert by_session.json() == rounds

    by_call = await client.get(f"/api/calls/{call_id}/negotiations", params={"session_id": session})
    assert by_call.json() == rounds
    assert (await client.get(f"/api/calls/{call_id}/negotiations")).json() == rounds

    done = (await client.get(f"/api/calls/{call_id}")).json()
    assert (done["outcome"], done["final_rate_agreed"], done["negotiation_rounds"]) == (
        "accepted",
        2150,
        3,
    )


async def test_call_holds_independent_negotiations(client: Client, make_call: Make) -> None:
    call = await make_call()
    cid = call["id"]
    a1 = await offer_ok(client, cid, 5000, "sess-a")
    b1 = await offer_ok(client, cid, 5000, "sess-b")
    d1 = await offer_ok(client, cid, 5000)  # the call's default negotiation (no session)
    a2 = await offer_ok(client, cid, 1900, "sess-a")
    assert [a1["round_number"], b1["round_number"], d1["round_number"], a2["round_number"]] == [
        1,
        1,
        1,
        2,
    ]
    assert d1["session_id"] is None
    assert a2["decision"] == "accept"
    # sess-a is closed, the others go on.
    assert_error(await negotiate(client, cid, 1900, "sess-a"), 409, "NEGOTIATION_CLOSED")
    assert (await offer_ok(client, cid, 5000, "sess-b"))["round_number"] == 2
    assert (await offer_ok(client, cid, 5000))["round_number"] == 2

    only_a = await client.get(f"/api/calls/{cid}/negotiations", params={"session_id": "sess-a"})
    assert [r["id"] for r in only_a.json()] == [a1["id"], a2["id"]]
    assert only_a.headers["x-session-id"] == "sess-a"
    everything = (await client.get(f"/api/calls/{cid}/negotiations")).json()
    assert len(everything) == 6
    assert [r["id"] for r in everything] == sorted(r["id"] for r in everything)


async def test_session_spans_calls(client: Client, make_call: Make) -> None:
    one, two = await make_call(), await make_call()
    r1 = await offer_ok(client, one["id"], 2500, "crm_user_12345")
    r2 = await offer_ok(client, two["id"], 2500, "crm_user_12345")
    await offer_ok(client, two["id"], 2500, "someone-else")
    assert r1["round_number"] == r2["round_number"] == 1
    rows = (await client.get("/api/negotiations/session/crm_user_12345")).json()
    assert [(r["call_id"], r["round_number"]) for r in rows] == [(one["id"], 1), (two["id"], 1)]


async def test_session_id_from_header_when_body_has_none(client: Client, make_call: Make) -> None:
    call = await make_call()
    response = await client.post(
        f"/api/calls/{call['id']}/negotiate",
        json={"carrier_offer": 2500},
        headers={"X-Session-ID": "from-header"},
    )
    assert response.status_code == 201
    assert response.json()["session_id"] == "from-header"
    assert response.headers["x-session-id"] == "from-header"


async def test_unknown_call_session_and_bad_session_ids(client: Client, make_call: Make) -> None:
    assert_error(await negotiate(client, 4242, 2000), 404, "CALL_NOT_FOUND")
    assert_error(await client.get("/api/calls/4242/negotiations"), 404, "CALL_NOT_FOUND")
    body = assert_error(
        await client.get("/api/negotiations/session/never-used"), 404, "SESSION_NOT_FOUND"
    )
    assert body["session_id"] == "never-used"
    call = await make_call()
    for bad in ("has space", "x" * 129, "semi;colon"):
        assert_error(await negotiate(client, call["id"], 2000, bad), 422, "INVALID_SESSION_ID")
        response = await client.get(
            f"/api/calls/{call['id']}/negotiations", params={"session_id": bad}
        )
        assert_error(response, 422, "INVALID_SESSION_ID")
        response = await client.get("/api/negotiations", params={"session_id": bad})
        assert_error(response, 422, "INVALID_SESSION_ID")
    assert_error(await client.get("/api/negotiations/session/a%20b"), 422, "INVALID_SESSION_ID")
    assert (await client.get(f"/api/calls/{call['id']}")).json()["negotiation_rounds"] == 0


async def test_negotiation_closed_after_accept_and_after_final_reject(
    client: Client, make_call: Make
) -> None:
    accepted = await make_call()
    assert (await offer_ok(client, accepted["id"], 1800, "s1"))["decision"] == "accept"
    for offer in (1700, 9000):
        body = assert_error(
            await negotiate(client, accepted["id"], offer, "s1"), 409, "NEGOTIATION_CLOSED"
        )
        assert body["session_id"] == "s1"

    rejected = await make_call()
    decisions = [(await offer_ok(client, rejected["id"], 9000, "s2"))["decision"] for _ in "123"]
    assert decisions == ["counter", "counter", "reject"]
    assert_error(await negotiate(client, rejected["id"], 1000, "s2"), 409, "NEGOTIATION_CLOSED")
    call = (await client.get(f"/api/calls/{rejected['id']}")).json()
    assert (call["outcome"], call["final_rate_agreed"], call["negotiation_rounds"]) == (
        "rejected",
        None,
        3,
    )
    assert call["last_decision"] == "reject"
    rows = (await client.get("/api/negotiations/session/s2")).json()
    assert len(rows) == 3  # the refused offers recorded nothing


async def test_call_id_in_body_may_be_string_or_number(client: Client, make_call: Make) -> None:
    call = await make_call()
    cid = call["id"]
    for same in (cid, str(cid), f" {cid} "):
        await offer_ok(
            client, cid, 2500, f"s-{same!r}".replace(" ", "_").replace("'", ""), call_id=same
        )
    for other in (cid + 1, str(cid + 1), "abc", f"{cid}.0", 0):
        response = await negotiate(client, cid, 2500, "mismatch", call_id=other)
        body = assert_error(response, 422, "CALL_ID_MISMATCH")
        assert str(cid) in body["error"]["message"]
    assert_error(await client.get("/api/negotiations/session/mismatch"), 404, "SESSION_NOT_FOUND")


def _next(response: Any) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    match = LINK.match(link)
    assert match, link
    return match.group(1)


async def _walk_array(client: Client, url: str, params: dict[str, Any]) -> list[list[int]]:
    pages: list[list[int]] = []
    response = await client.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        pages.append([r["id"] for r in response.json()])
        target = _next(response)
        if target is None:
            return pages
        query = parse_qs(urlsplit(target).query)
        assert query["limit"] == [str(params["limit"])]  # other parameters are kept
        response = await client.get(target)


async def test_round_arrays_paginate_with_link_headers(client: Client, make_call: Make) -> None:
    ids = []
    calls = [await make_call() for _ in range(3)]
    for call in calls:
        for offer in (1000, 1000):  # accept, then refused: one round per (call, session)
            response = await negotiate(client, call["id"], offer, "paged")
            if response.status_code == 201:
                ids.append(response.json()["id"])
        ids.append((await offer_ok(client, call["id"], 1000, "paged2"))["id"])
    by_session = [r["id"] for r in (await client.get("/api/negotiations/session/paged")).json()]
    assert len(by_session) == 3

    pages = await _walk_array(client, "/api/negotiations/session/paged", {"limit": 2})
    assert pages == [by_session[:2], by_session[2:]]
    pages = await _walk_array(client, "/api/negotiations/session/paged", {"limit": 1})
    assert pages == [[i] for i in by_session]
    assert await _walk_array(client, "/api/negotiations/session/paged", {"limit": 3}) == [
        by_session
    ]

    cid = calls[0]["id"]
    all_of_call = [r["id"] for r in (await client.get(f"/api/calls/{cid}/negotiations")).json()]
    assert len(all_of_call) == 2
    pages = await _walk_array(client, f"/api/calls/{cid}/negotiations", {"limit": 1})
    assert pages == [[i] for i in all_of_call]
    pages = await _walk_array(
        client, f"/api/calls/{cid}/negotiations", {"limit": 1, "session_id": "paged2"}
    )
    assert pages == [[all_of_call[1]]]

    after = await client.get("/api/negotiations/session/paged", params={"after_id": by_session[0]})
    assert [r["id"] for r in after.json()] == by_session[1:]
    assert (
        await client.get("/api/negotiations/session/paged", params={"after_id": by_session[-1]})
    ).json() == []


async def _walk_query(client: Client, params: dict[str, Any]) -> list[list[int]]:
    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        page_params = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/negotiations", params=page_params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        pages.append([r["id"] for r in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


async def test_query_by_call_session_both_and_filters(client: Client, make_call: Make) -> None:
    one, two = await make_call(), await make_call()
    rows: list[dict[str, Any]] = []
    for call, session, offer in [
        (one, "s1", 5000),  # counter
        (one, "s1", 5000),  # counter
        (two, "s1", 1500),  # accept
        (one, "s2", 2100),  # counter
        (one, "s1", 5000),  # reject
        (two, None, 5000),  # counter
        (one, "s2", 1999),  # accept
    ]:
        rows.append(await offer_ok(client, call["id"], offer, session))
    ids = [r["id"] for r in rows]

    async def query(**params: Any) -> list[int]:
        pages = await _walk_query(client, params)
        return [i for page in pages for i in page]

    assert await query() == ids
    assert await query(call_id=one["id"]) == [ids[i] for i in (0, 1, 3, 4, 6)]
    assert await query(session_id="s1") == [ids[i] for i in (0, 1, 2, 4)]
    assert await query(call_id=one["id"], session_id="s1") == [ids[i] for i in (0, 1, 4)]
    assert await query(call_id=two["id"], session_id="s2") == []
    assert await query(decision="accept") == [ids[2], ids[6]]
    assert await query(decision="reject", session_id="s1") == [ids[4]]
    assert await query(decision="counter", call_id=two["id"]) == [ids[5]]

    stamp = parse_timestamp(rows[3]["timestamp"])
    assert await query(since=rows[3]["timestamp"]) == ids[3:]
    assert await query(until=rows[3]["timestamp"]) == ids[:3]
    assert await query(since=rows[1]["timestamp"], until=rows[4]["timestamp"]) == ids[1:4]
    # The same instant in another offset, and naive (taken as UTC), select the same rows.
    shifted = stamp.astimezone(dt.timezone(dt.timedelta(hours=-5))).isoformat()
    assert await query(since=shifted) == ids[3:]
    naive = stamp.replace(tzinfo=None).isoformat()
    assert await query(since=naive) == ids[3:]
    assert await query(since="2000-01-01T00:00:00Z", until="2001-01-01T00:00:00Z") == []

    pages = await _walk_query(client, {"limit": 3})
    assert pages == [ids[:3], ids[3:6], ids[6:]]
    assert await _walk_query(client, {"limit": 7}) == [ids]
    assert await _walk_query(client, {"limit": 2, "session_id": "s1"}) == [
        [ids[0], ids[1]],
        [ids[2], ids[4]],
    ]
    assert await _walk_query(client, {"limit": 1, "call_id": one["id"], "decision": "accept"}) == [
        [ids[6]]
    ]
    default_page = (await client.get("/api/negotiations")).json()
    assert default_page["next_cursor"] is None and len(default_page["items"]) == 7
    assert set(default_page["items"][0]) == ROUND_KEYS


async def test_query_default_limit_is_100(client: Client, make_call: Make) -> None:
    calls = [await make_call() for _ in range(3)]
    for i in range(101):
        await offer_ok(client, calls[i % 3]["id"], 1000, f"s{i}")
    page = (await client.get("/api/negotiations")).json()
    assert len(page["items"]) == 100 and page["next_cursor"] is not None
    rest = (await client.get("/api/negotiations", params={"cursor": page["next_cursor"]})).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None


BAD_QUERY_PARAMS: list[dict[str, Any]] = [
    {"limit": 0},
    {"limit": 1001},
    {"limit": -3},
    {"limit": "many"},
    {"since": "yesterday"},
    {"until": "2026-13-45T00:00:00Z"},
    {"decision": "maybe"},
    {"call_id": "abc"},
    {"call_id": 0},
]


async def test_query_rejects_bad_parameters(client: Client) -> None:
    for params in BAD_QUERY_PARAMS:
        response = await client.get("/api/negotiations", params=params)
        assert response.status_code == 422, (params, response.text)
        assert_error(response, 422, "VALIDATION_ERROR")


def _cursor(kind: str, position: object) -> str:
    """A cursor in the service's format for a position the service never issues."""
    raw = json.dumps(["v1", kind, position]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_bad_limits_and_cursors_everywhere(client: Client, make_call: Make) -> None:
    call = await make_call()
    await offer_ok(client, call["id"], 1000, "s1")
    arrays = [f"/api/calls/{call['id']}/negotiations", "/api/negotiations/session/s1"]
    for url in [*arrays, "/api/negotiations", "/api/loads"]:
        for limit in (0, 1001):
            assert_error(await client.get(url, params={"limit": limit}), 422, "VALIDATION_ERROR")
        assert (await client.get(url, params={"limit": 1000})).status_code == 200
    for url in arrays:
        assert_error(await client.get(url, params={"after_id": -1}), 422, "VALIDATION_ERROR")
        assert_error(await client.get(url, params={"after_id": "x"}), 422, "VALIDATION_ERROR")
    page = (await client.get("/api/loads", params={"limit": 1})).json()
    forged = [_cursor("rounds", n) for n in (-5, 2**31, 10**30, 1.5, "7")]
    for cursor in ("not-a-cursor", "AAAA", "eyJ2MSI6MX0", "W10", "WyJ2MSIsInJvdW5kcyIsdHJ1ZV0"):
        response = await client.get("/api/negotiations", params={"cursor": cursor})
        assert_error(response, 422, "INVALID_CURSOR")
    for cursor in forged:
        response = await client.get("/api/negotiations", params={"cursor": cursor})
        assert_error(response, 422, "INVALID_CURSOR")
    nul = _cursor("loads", "LD\x00")
    assert_error(await client.get("/api/loads", params={"cursor": nul}), 422, "INVALID_CURSOR")
    # A cursor issued by another listing is not accepted either.
    assert page["next_cursor"] is None
    for i in range(2):
        await client.post("/api/loads", json={**LOAD, "load_id": f"LDX{i}"})
    loads_cursor = (await client.get("/api/loads", params={"limit": 1})).json()["next_cursor"]
    assert loads_cursor
    response = await client.get("/api/negotiations", params={"cursor": loads_cursor})
    assert_error(response, 422, "INVALID_CURSOR")
