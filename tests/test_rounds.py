"""Negotiation rounds over HTTP: the seed's client flow, negotiations per (call, session)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.helpers import ROUND_KEYS, Client, assert_error, negotiate, offer_ok, parse_timestamp

Make = Callable[..., Awaitable[dict[str, Any]]]


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
    # sess-a reached its final decision; the accept ended the call for every negotiation on it.
    assert_error(await negotiate(client, cid, 1900, "sess-a"), 409, "NEGOTIATION_CLOSED")
    assert_error(await negotiate(client, cid, 5000, "sess-b"), 409, "CALL_CLOSED")
    assert_error(await negotiate(client, cid, 5000), 409, "CALL_CLOSED")

    only_a = await client.get(f"/api/calls/{cid}/negotiations", params={"session_id": "sess-a"})
    assert [r["id"] for r in only_a.json()] == [a1["id"], a2["id"]]
    assert only_a.headers["x-session-id"] == "sess-a"
    everything = (await client.get(f"/api/calls/{cid}/negotiations")).json()
    assert len(everything) == 4
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
    for params in ({"after_id": 1}, {"session_id": "some-session"}):
        response = await client.get("/api/calls/4242/negotiations", params=params)
        assert_error(response, 404, "CALL_NOT_FOUND")
    # A call that exists answers its (possibly empty) page, whatever the filters leave.
    quiet = await make_call()
    assert (await client.get(f"/api/calls/{quiet['id']}/negotiations")).json() == []
    assert (await negotiate(client, quiet["id"], 2500)).status_code == 201
    for params in ({"after_id": 10**9}, {"session_id": "another-session"}):
        response = await client.get(f"/api/calls/{quiet['id']}/negotiations", params=params)
        assert response.status_code == 200 and response.json() == [], response.text
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
    for not_an_id in (True, [cid], {"id": cid}):
        response = await negotiate(client, cid, 2500, "mismatch", call_id=not_an_id)
        assert_error(response, 422, "VALIDATION_ERROR")
    assert_error(await client.get("/api/negotiations/session/mismatch"), 404, "SESSION_NOT_FOUND")
