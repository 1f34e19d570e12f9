"""Rows the old service wrote (no decision, NULL offers, free text, duplicate round numbers)
read back through every round listing, and a new negotiation continues after them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, insert

from negotiation.queries import calls, rounds
from negotiation.settings import Settings
from tests.helpers import Client, assert_error, db_write, insert_load, negotiate, offer_ok

WHEN = dt.datetime(2025, 3, 1, 9, 30)


def _legacy(conn: Connection) -> None:
    insert_load(conn, "OLD1", 1800, equipment_type="Reefer", pickup_datetime=WHEN)
    conn.execute(
        insert(calls).values(
            id=7, load_id="OLD1", carrier_mc_number="MC9", outcome="Booked - see notes"
        )
    )
    conn.execute(insert(calls).values(id=8, load_id=None, carrier_mc_number="MC9"))
    legacy: list[dict[str, Any]] = [
        {"round_number": 1, "carrier_offer": None, "system_response": "Agent greeted carrier"},
        {"round_number": 1, "carrier_offer": 2100.5, "system_response": "countered w/ 1850??"},
        {"round_number": 2, "carrier_offer": 1950, "system_response": None},
    ]
    conn.execute(insert(rounds), [{"call_id": 7, "timestamp": WHEN, **row} for row in legacy])


async def test_legacy_rows_read_back_everywhere(client: Client, settings: Settings) -> None:
    await db_write(settings, _legacy)
    by_call = (await client.get("/api/calls/7/negotiations")).json()
    assert [(r["round_number"], r["carrier_offer"], r["decision"]) for r in by_call] == [
        (1, None, None),
        (1, 2100.5, None),
        (2, 1950, None),
    ]
    first = by_call[0]
    assert (first["accepted"], first["is_final"], first["agreed_rate"]) == (False, False, None)
    assert first["system_response"] == "Agent greeted carrier"
    assert first["timestamp"].startswith("2025-03-01T09:30:00")
    page = (await client.get("/api/negotiations", params={"call_id": 7})).json()
    assert page["items"] == by_call
    call = (await client.get("/api/calls/7")).json()
    assert (call["outcome"], call["negotiation_rounds"], call["last_decision"]) == (
        "Booked - see notes",
        0,
        None,
    )
    assert call["transferred_to_rep"] is False

    # The call's default negotiation goes on after the legacy rounds (a session starts afresh).
    assert (await offer_ok(client, 7, 2500, "fresh"))["round_number"] == 1
    new = await offer_ok(client, 7, 1800)
    assert (new["round_number"], new["decision"]) == (3, "accept")


async def test_call_without_load_cannot_negotiate(client: Client, settings: Settings) -> None:
    await db_write(settings, _legacy)
    assert_error(await negotiate(client, 8, 1000), 409, "CALL_HAS_NO_LOAD")
    assert (await client.get("/api/calls/8")).json()["load_id"] is None
