"""Bookings over HTTP, on SQLite and PostgreSQL: a load is booked once, a call ends once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from negotiation.app import create_app
from negotiation.settings import Settings
from tests import dbutil
from tests.conftest import LOAD
from tests.helpers import Client, assert_error, concurrent_client, negotiate, offer_ok

Make = Callable[..., Awaitable[dict[str, Any]]]
# Loadboard 2000, ceiling 2200 (10 %), 3 rounds: 1800 is accepted at once, 2500 countered.
UNDER = 1800


async def load_of(client: Client, load_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/loads/{load_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def call_of(client: Client, call_id: int) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/api/calls/{call_id}")).json()
    return body


async def test_an_accepted_round_books_the_load(client: Client, make_call: Make) -> None:
    call = await make_call()
    countered = await offer_ok(client, call["id"], 2500, "s1")
    assert (countered["decision"], countered["next_action"]) == ("counter", "await_offer")
    accepted = await offer_ok(client, call["id"], 2100, "s1")
    assert (accepted["decision"], accepted["next_action"]) == ("accept", "transfer_to_rep")
    assert "transfer you to a rep" in accepted["system_response"]

    load = await load_of(client, call["load_id"])
    assert (load["status"], load["booked_call_id"], load["booked_rate"]) == (
        "booked",
        call["id"],
        2100,
    )
    assert [(b["event"], b["call_id"], b["round_id"], b["rate"]) for b in load["bookings"]] == [
        ("booked", call["id"], accepted["id"], 2100)
    ]
    assert load["bookings"][0]["at"] == accepted["timestamp"]
    after = await call_of(client, call["id"])
    assert (after["outcome"], after["final_rate_agreed"], after["load_status"]) == (
        "accepted",
        2100,
        "booked",
    )
    # Creating a call on a booked load is allowed (the carrier did call); it shows the status.
    late = await client.post("/api/calls", json={"load_id": call["load_id"]})
    assert late.status_code == 201 and late.json()["load_status"] == "booked"
    body = assert_error(await negotiate(client, late.json()["id"], 1500), 409, "LOAD_BOOKED")
    assert f"call {call['id']}" in body["error"]["message"]
    assert (await call_of(client, late.json()["id"]))["negotiation_rounds"] == 0


async def test_a_final_reject_ends_the_call_and_leaves_the_load(
    client: Client, make_call: Make
) -> None:
    call = await make_call()
    decisions = [await offer_ok(client, call["id"], 9000) for _ in range(3)]
    assert [(r["decision"], r["next_action"]) for r in decisions] == [
        ("counter", "await_offer"),
        ("counter", "await_offer"),
        ("reject", "end_call"),
    ]
    assert_error(await negotiate(client, call["id"], 1500), 409, "NEGOTIATION_CLOSED")
    for session in ("another", "third"):
        body = assert_error(await negotiate(client, call["id"], 1500, session), 409, "CALL_CLOSED")
        assert "rejected" in body["error"]["message"]
    load = await load_of(client, call["load_id"])
    assert (load["status"], load["booked_call_id"], load["bookings"]) == ("available", None, [])
    other = (await client.post("/api/calls", json={"load_id": call["load_id"]})).json()
    assert (await offer_ok(client, other["id"], UNDER))["decision"] == "accept"


async def test_an_accept_ends_the_call_for_every_session(client: Client, make_call: Make) -> None:
    call = await make_call()
    await offer_ok(client, call["id"], 2500, "other-session")
    await offer_ok(client, call["id"], UNDER, "winner")
    assert_error(await negotiate(client, call["id"], UNDER, "winner"), 409, "NEGOTIATION_CLOSED")
    for session in ("other-session", "new-session", None):
        assert_error(await negotiate(client, call["id"], 1500, session), 409, "CALL_CLOSED")
    assert (await call_of(client, call["id"]))["negotiation_rounds"] == 2


@pytest.mark.parametrize("outcome", ["rejected", "transferred", "abandoned"])
async def test_a_terminal_outcome_by_patch_closes_the_call(
    client: Client, make_call: Make, outcome: str
) -> None:
    call = await make_call()
    await offer_ok(client, call["id"], 2500, "s")
    patched = await client.patch(f"/api/calls/{call['id']}", json={"outcome": outcome})
    assert patched.status_code == 200, patched.text
    for session in ("s", None, "fresh"):
        assert_error(await negotiate(client, call["id"], UNDER, session), 409, "CALL_CLOSED")
    assert (await load_of(client, call["load_id"]))["status"] == "available"
    # The outcome no longer changes; the rest of the record may.
    for change in ({"outcome": "accepted", "final_rate_agreed": 2000}, {"outcome": "negotiating"}):
        assert_error(
            await client.patch(f"/api/calls/{call['id']}", json=change), 409, "CALL_CLOSED"
        )
    same = await client.patch(f"/api/calls/{call['id']}", json={"outcome": outcome})
    assert same.status_code == 200


async def test_patch_accepted_books_and_then_holds(client: Client, make_call: Make) -> None:
    call = await make_call()
    cid = call["id"]
    no_rate = await client.patch(f"/api/calls/{cid}", json={"outcome": "accepted"})
    assert_error(no_rate, 422, "VALIDATION_ERROR")
    contradiction = {"outcome": "rejected", "final_rate_agreed": 1900}
    assert_error(
        await client.patch(f"/api/calls/{cid}", json=contradiction), 422, "VALIDATION_ERROR"
    )
    assert (await call_of(client, cid))["outcome"] == "negotiating"

    booked = await client.patch(
        f"/api/calls/{cid}", json={"outcome": "accepted", "final_rate_agreed": 1900}
    )
    assert booked.status_code == 200, booked.text
    assert (booked.json()["outcome"], booked.json()["final_rate_agreed"]) == ("accepted", 1900)
    load = await load_of(client, call["load_id"])
    assert (load["status"], load["booked_call_id"], load["booked_rate"]) == ("booked", cid, 1900)
    assert [(b["event"], b["call_id"], b["round_id"]) for b in load["bookings"]] == [
        ("booked", cid, None)
    ]
    # The contradiction: an accepted call flipped to rejected while keeping its rate.
    flip = await client.patch(f"/api/calls/{cid}", json={"outcome": "rejected"})
    assert_error(flip, 409, "CALL_CLOSED")
    assert_error(
        await client.patch(f"/api/calls/{cid}", json={"final_rate_agreed": 1850}),
        409,
        "CALL_CLOSED",
    )
    assert_error(await negotiate(client, cid, 1500, "later"), 409, "CALL_CLOSED")
    # The normal hand-off after an accept, and the call's record, still go through.
    handoff = await client.patch(
        f"/api/calls/{cid}",
        json={"transferred_to_rep": True, "notes": "to Dana", "sentiment": "positive"},
    )
    assert handoff.status_code == 200, handoff.text
    after = handoff.json()
    assert (after["outcome"], after["final_rate_agreed"], after["transferred_to_rep"]) == (
        "accepted",
        1900,
        True,
    )
    # Another call cannot book the load by PATCH either.
    rival = (await client.post("/api/calls", json={"load_id": call["load_id"]})).json()
    again = {"outcome": "accepted", "final_rate_agreed": 1800}
    assert_error(await client.patch(f"/api/calls/{rival['id']}", json=again), 409, "LOAD_BOOKED")
    assert (await call_of(client, rival["id"]))["outcome"] == "negotiating"


async def test_release_then_rebook(client: Client, make_call: Make) -> None:
    first = await make_call()
    load_id = first["load_id"]
    second = (await client.post("/api/calls", json={"load_id": load_id})).json()
    await offer_ok(client, first["id"], UNDER)
    assert_error(await negotiate(client, second["id"], UNDER), 409, "LOAD_BOOKED")

    assert_error(
        await client.post(f"/api/loads/{load_id}/release", json={}), 422, "VALIDATION_ERROR"
    )
    released = await client.post(
        f"/api/loads/{load_id}/release", json={"reason": "carrier's truck broke down"}
    )
    assert released.status_code == 200, released.text
    load = released.json()
    assert (load["status"], load["booked_call_id"], load["booked_rate"]) == (
        "available",
        None,
        None,
    )
    assert [(b["event"], b["call_id"], b["rate"], b["reason"]) for b in load["bookings"]] == [
        ("booked", first["id"], UNDER, None),
        ("released", first["id"], UNDER, "carrier's truck broke down"),
    ]
    again = await client.post(f"/api/loads/{load_id}/release", json={"reason": "twice"})
    assert_error(again, 409, "LOAD_NOT_BOOKED")
    unknown = await client.post("/api/loads/NOPE/release", json={"reason": "x"})
    assert_error(unknown, 404, "LOAD_NOT_FOUND")
    # The booking call keeps its history and stays ended; another call books the load.
    assert (await call_of(client, first["id"]))["outcome"] == "accepted"
    assert_error(await negotiate(client, first["id"], 1500), 409, "NEGOTIATION_CLOSED")
    rebooked = await offer_ok(client, second["id"], 1900)
    assert rebooked["decision"] == "accept"
    load = await load_of(client, load_id)
    assert (load["status"], load["booked_call_id"]) == ("booked", second["id"])
    assert [b["event"] for b in load["bookings"]] == ["booked", "released", "booked"]


@pytest.mark.parametrize("session", [None, "per-call"])
async def test_thirty_concurrent_accepts_book_the_load_once(
    settings: Settings, database_url: str, session: str | None
) -> None:
    app = create_app(settings)
    async with concurrent_client(app) as (c, gauge):
        assert (await c.post("/api/loads", json={**LOAD, "load_id": "LD-HOT"})).status_code == 201
        calls = [(await c.post("/api/calls", json={"load_id": "LD-HOT"})).json() for _ in range(30)]
        responses = await asyncio.gather(
            *(
                c.post(
                    f"/api/calls/{x['id']}/negotiate",
                    json={
                        "carrier_offer": UNDER,
                        "session_id": None if session is None else f"{session}-{x['id']}",
                    },
                )
                for x in calls
            )
        )
        assert gauge.peak > 1
        assert sorted(r.status_code for r in responses) == [201] + [409] * 29
        assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
            "LOAD_BOOKED"
        }
        winner = next(r.json() for r in responses if r.status_code == 201)
        load = await load_of(c, "LD-HOT")
        assert (load["status"], load["booked_call_id"]) == ("booked", winner["call_id"])
        assert len(load["bookings"]) == 1
        for x in calls:
            call = await call_of(c, x["id"])
            won = x["id"] == winner["call_id"]
            assert call["outcome"] == ("accepted" if won else "negotiating")
            assert call["negotiation_rounds"] == (1 if won else 0)
    rows = await dbutil.execute(database_url, "SELECT count(*) FROM negotiations")
    assert rows[0][0] == 1  # nothing recorded for the refused offers


async def test_legacy_calls_with_terminal_outcomes_are_closed(
    client: Client, make_call: Make, database_url: str
) -> None:
    """Calls written by the legacy service with a terminal outcome take no rounds; the others
    (including its free-text outcomes) do."""
    outcomes = ["accepted", "rejected", "transferred", "abandoned", "no_agreement", None]
    made = {outcome: await make_call() for outcome in outcomes}
    for outcome, call in made.items():
        await dbutil.execute(
            database_url,
            "UPDATE calls SET outcome = :outcome WHERE id = :id",
            outcome=outcome,
            id=call["id"],
        )
    for outcome, call in made.items():
        response = await negotiate(client, call["id"], 2500, "legacy")
        if outcome in ("accepted", "rejected", "transferred", "abandoned"):
            body = assert_error(response, 409, "CALL_CLOSED")
            assert outcome in body["error"]["message"]
        else:
            assert response.status_code == 201, response.text
