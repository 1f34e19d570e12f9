"""A session resumed on a new call about the same load goes on with its negotiation there."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from negotiation.app import create_app
from negotiation.settings import Settings
from tests import dbutil
from tests.conftest import LOAD
from tests.helpers import (
    Client,
    assert_error,
    concurrent_client,
    negotiate,
    offer_ok,
    with_settings,
)

Make = Callable[..., Awaitable[dict[str, Any]]]


async def new_call(client: Client, load_id: str) -> int:
    response = await client.post("/api/calls", json={"load_id": load_id})
    assert response.status_code == 201, response.text
    call_id: int = response.json()["id"]
    return call_id


async def test_resumed_session_continues_numbering_and_counters(
    client: Client, make_call: Make
) -> None:
    dropped = await make_call()
    load_id = dropped["load_id"]
    r1 = await offer_ok(client, dropped["id"], 2500, "carrier-7")
    r2 = await offer_ok(client, dropped["id"], 2500, "carrier-7")
    assert [(r["round_number"], r["counter_offer"]) for r in (r1, r2)] == [(1, 2066), (2, 2133)]

    # The call dropped; the carrier calls back about the same load, in the same session.
    callback = await new_call(client, load_id)
    r3 = await offer_ok(client, callback, 2500, "carrier-7")
    # Round 3 of 3: the last round, so the ask above the ceiling is refused, not countered at
    # round 1's 2066 again.
    assert (r3["round_number"], r3["decision"], r3["rounds_remaining"]) == (3, "reject", 0)
    assert_error(await negotiate(client, callback, 2100, "carrier-7"), 409, "NEGOTIATION_CLOSED")
    # The reject ended the callback. Another session on the load, and the same session on
    # another load, start afresh.
    assert_error(await negotiate(client, callback, 2100, "someone-else"), 409, "CALL_CLOSED")
    third = await new_call(client, load_id)
    assert (await offer_ok(client, third, 2500, "someone-else"))["round_number"] == 1
    elsewhere = await make_call()
    assert (await offer_ok(client, elsewhere["id"], 2500, "carrier-7"))["round_number"] == 1
    # The call's own count is its own rounds.
    calls = [(await client.get(f"/api/calls/{c}")).json() for c in (dropped["id"], callback)]
    assert [c["negotiation_rounds"] for c in calls] == [2, 1]


async def test_resumed_counters_never_go_below_what_was_offered(
    settings: Settings, database_url: str
) -> None:
    """Five rounds: the callback's counters start at the dropped call's last counter."""
    app = create_app(with_settings(settings, max_rounds=5))
    async with concurrent_client(app) as (c, _):
        assert (await c.post("/api/loads", json={**LOAD, "load_id": "LD-R"})).status_code == 201
        first, second, third = [await new_call(c, "LD-R") for _ in range(3)]
        counters = [(await offer_ok(c, first, 2500, "s"))["counter_offer"] for _ in range(3)]
        fourth = await offer_ok(c, second, 2500, "s")
        assert fourth["round_number"] == 4
        assert counters == sorted(counters) and fourth["counter_offer"] >= counters[-1]
        # An offer at the last counter is accepted on the callback: it was already offered.
        took = await offer_ok(c, third, fourth["counter_offer"], "s")
        assert (took["round_number"], took["decision"]) == (5, "accept")
        load = (await c.get("/api/loads/LD-R")).json()
        assert (load["booked_call_id"], load["booked_rate"]) == (third, fourth["counter_offer"])


@pytest.mark.parametrize("max_rounds", [3, 5])
async def test_concurrent_offers_on_two_calls_of_a_resumed_session(
    settings: Settings, database_url: str, max_rounds: int
) -> None:
    """Two calls of one load in one session at once: at most MAX_ROUNDS rounds in all, each
    number once, counters non-decreasing in round order."""
    app = create_app(with_settings(settings, max_rounds=max_rounds))
    async with concurrent_client(app) as (c, gauge):
        assert (await c.post("/api/loads", json={**LOAD, "load_id": "LD-2"})).status_code == 201
        one, two = await new_call(c, "LD-2"), await new_call(c, "LD-2")
        await offer_ok(c, one, 2500, "both")  # the session exists and has round 1
        work = [
            c.post(
                f"/api/calls/{call}/negotiate", json={"carrier_offer": 2500, "session_id": "both"}
            )
            for _ in range(10)
            for call in (one, two)
        ]
        responses = await asyncio.gather(*work)
        assert gauge.peak > 1
        created = [r.json() for r in responses if r.status_code == 201]
        assert len(created) == max_rounds - 1
        refused = {r.json()["error"]["code"] for r in responses if r.status_code != 201}
        assert refused <= {"NEGOTIATION_CLOSED", "CALL_CLOSED"}
        rows = (await c.get("/api/negotiations/session/both")).json()
        by_number = sorted(rows, key=lambda r: r["round_number"])
        assert [r["round_number"] for r in by_number] == list(range(1, max_rounds + 1))
        counters = [r["counter_offer"] for r in by_number if r["counter_offer"] is not None]
        assert counters == sorted(counters)
        assert by_number[-1]["decision"] == "reject"
    rows = await dbutil.execute(
        database_url, "SELECT count(*) FROM negotiations WHERE session_id = 'both'"
    )
    assert rows[0][0] == max_rounds


async def test_a_session_that_booked_the_load_cannot_go_on_elsewhere(
    client: Client, make_call: Make
) -> None:
    call = await make_call()
    await offer_ok(client, call["id"], 1900, "booker")
    callback = await new_call(client, call["load_id"])
    assert_error(await negotiate(client, callback, 1900, "booker"), 409, "NEGOTIATION_CLOSED")
    assert_error(await negotiate(client, callback, 1900, "fresh"), 409, "LOAD_BOOKED")
