"""Direction and exactness of money over HTTP: the broker pays, so lower offers are better."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Numeric, inspect, select, text

from negotiation.queries import rounds
from negotiation.settings import Settings
from tests.conftest import LOAD
from tests.helpers import (
    Client,
    assert_error,
    client_for,
    db_read,
    negotiate,
    offer_ok,
    with_settings,
)

Make = Callable[..., Awaitable[dict[str, Any]]]


async def _decisions(client: Client, call_id: int, offers: list[Any]) -> list[dict[str, Any]]:
    return [await offer_ok(client, call_id, offer, "s") for offer in offers]


async def test_offer_at_or_below_loadboard_rate_is_accepted_at_the_offer(
    client: Client, make_call: Make
) -> None:
    for offer in (2000, 1999.99, 1500, 0.01):
        call = await make_call()  # L = 2000
        first = await offer_ok(client, call["id"], offer, "s")
        assert first["decision"] == "accept" and first["agreed_rate"] == offer
        read = (await client.get(f"/api/calls/{call['id']}")).json()
        assert (read["outcome"], read["final_rate_agreed"], read["negotiation_rounds"]) == (
            "accepted",
            offer,
            1,
        )


async def test_offer_above_ceiling_is_never_accepted(client: Client, make_call: Make) -> None:
    call = await make_call()  # L = 2000, C = 2200
    rows = await _decisions(client, call["id"], [2200.01, 2200.01, 2200.01])
    assert [r["decision"] for r in rows] == ["counter", "counter", "reject"]
    assert rows[2]["agreed_rate"] is None and rows[2]["is_final"]
    read = (await client.get(f"/api/calls/{call['id']}")).json()
    assert (read["outcome"], read["final_rate_agreed"], read["negotiation_rounds"]) == (
        "rejected",
        None,
        3,
    )


async def test_counters_lie_between_rate_and_ceiling_below_the_offer(
    client: Client, make_call: Make
) -> None:
    call = await make_call()
    rows = await _decisions(client, call["id"], [2199, 2180])
    counters = [r["counter_offer"] for r in rows]
    assert counters == [2066, 2133]
    for row in rows:
        assert 2000 <= row["counter_offer"] <= 2200 and row["counter_offer"] < row["carrier_offer"]
    last = await offer_ok(client, call["id"], 2200, "s")  # the ceiling, on the last round
    assert last["decision"] == "accept" and last["agreed_rate"] == 2200


async def test_offer_at_or_below_earlier_counter_is_accepted(
    client: Client, make_call: Make
) -> None:
    call = await make_call()
    first = await offer_ok(client, call["id"], 2500, "s")
    assert first["counter_offer"] == 2066
    again = await offer_ok(client, call["id"], 2066, "s")  # takes the broker's counter
    assert again["decision"] == "accept" and again["agreed_rate"] == 2066


async def test_max_rate_is_the_ceiling_when_set(client: Client, make_load: Make) -> None:
    await make_load("LD001", loadboard_rate=2000, max_rate=2600)
    call = (await client.post("/api/calls", json={"load_id": "LD001"})).json()
    rows = await _decisions(client, call["id"], [3000, 3000, 2600])
    assert [r["counter_offer"] for r in rows[:2]] == [2200, 2400]
    assert rows[2]["decision"] == "accept" and rows[2]["agreed_rate"] == 2600

    await make_load("LD002", loadboard_rate=2000, max_rate=2600)  # LD001 is booked now
    other = (await client.post("/api/calls", json={"load_id": "LD002"})).json()
    rows = await _decisions(client, other["id"], [3000, 3000, 2600.01])
    assert rows[2]["decision"] == "reject"


async def test_max_rounds_setting_changes_the_negotiation(
    settings: Settings, make_call: Make
) -> None:
    call = await make_call()
    async with client_for(with_settings(settings, max_rounds=5)) as five:
        rows = await _decisions(five, call["id"], [9000] * 5)
        assert [r["decision"] for r in rows] == ["counter"] * 4 + ["reject"]
        assert [r["rounds_remaining"] for r in rows] == [4, 3, 2, 1, 0]
        assert [r["counter_offer"] for r in rows[:4]] == [2040, 2080, 2120, 2160]
        assert_error(await negotiate(five, call["id"], 100, "s"), 409, "NEGOTIATION_CLOSED")

    other, third = await make_call(), await make_call()
    async with client_for(with_settings(settings, max_rounds=1)) as one:
        assert (await offer_ok(one, other["id"], 2200, "a"))["decision"] == "accept"
        assert (await offer_ok(one, third["id"], 2200.01, "b"))["decision"] == "reject"


async def test_max_markup_setting_moves_the_ceiling(settings: Settings, make_call: Make) -> None:
    call = await make_call()
    async with client_for(with_settings(settings, max_markup=Decimal("0.25"))) as loose:
        rows = await _decisions(loose, call["id"], [9000, 9000, 2500])
        assert [r["counter_offer"] for r in rows[:2]] == [2166, 2333]
        assert rows[2]["decision"] == "accept"
    strict = await make_call()
    async with client_for(with_settings(settings, max_markup=Decimal("0"))) as tight:
        rows = await _decisions(tight, strict["id"], [2000.01, 2000.01, 2000.01])
        assert [r["counter_offer"] for r in rows[:2]] == [2000, 2000]
        assert rows[2]["decision"] == "reject"


MONEY_COLUMNS = {
    "loads": ["loadboard_rate", "max_rate"],
    "calls": ["initial_rate_offered", "final_rate_agreed"],
    "negotiations": ["carrier_offer", "counter_offer"],
}


def _money_column_types(conn: Connection) -> dict[str, Any]:
    inspector = inspect(conn)
    return {
        f"{table}.{column['name']}": column["type"]
        for table, names in MONEY_COLUMNS.items()
        for column in inspector.get_columns(table)
        if column["name"] in names
    }


def _stored_offer(conn: Connection) -> tuple[str, Decimal, str | None]:
    exact = conn.execute(select(rounds.c.carrier_offer)).scalar_one()
    as_text = None
    if conn.dialect.name == "postgresql":
        as_text = conn.execute(text("SELECT carrier_offer::text FROM negotiations")).scalar_one()
    return conn.dialect.name, exact, as_text


async def test_money_stays_exact(client: Client, make_load: Make, settings: Settings) -> None:
    await make_load("LD001", loadboard_rate=2300.10, max_rate=9999999.99)
    call = (await client.post("/api/calls", json={"load_id": "LD001"})).json()
    assert call["initial_rate_offered"] == 2300.1
    response = await negotiate(client, call["id"], 2300.10, "s")
    assert response.status_code == 201
    assert '"carrier_offer":2300.1,' in response.text
    assert '"agreed_rate":2300.1,' in response.text
    rows = await client.get("/api/negotiations/session/s")
    assert '"carrier_offer":2300.1,' in rows.text
    assert (await client.get(f"/api/calls/{call['id']}")).json()["final_rate_agreed"] == 2300.1
    assert (await client.get("/api/loads/LD001")).json()["max_rate"] == 9999999.99

    types = await db_read(settings, _money_column_types)
    assert set(types) == {f"{t}.{c}" for t, cs in MONEY_COLUMNS.items() for c in cs}
    for name, column_type in types.items():
        assert isinstance(column_type, Numeric), (name, column_type)
        assert (column_type.precision, column_type.scale) == (12, 2), name
    dialect, exact, as_text = await db_read(settings, _stored_offer)
    assert exact == Decimal("2300.10") and str(exact) == "2300.10"
    # PostgreSQL keeps the NUMERIC digits as given; SQLite has no decimal storage class.
    assert as_text == ("2300.10" if dialect == "postgresql" else None)


async def test_binary_float_artifacts_are_refused_not_rounded(
    client: Client, make_call: Make
) -> None:
    call = await make_call()
    for offer in (0.1 + 0.2, 1234.5678, 2300.001):
        assert_error(await negotiate(client, call["id"], offer), 422, "VALIDATION_ERROR")
    assert (await client.get(f"/api/calls/{call['id']}")).json()["negotiation_rounds"] == 0


async def test_loads_fixture_rate(client: Client) -> None:
    # Guards the numbers the tests above assume.
    assert LOAD["loadboard_rate"] == 2000


async def test_counter_never_at_or_above_the_offer(client: Client, make_load: Make) -> None:
    # L and C with cents: the only whole dollar in [L, C] is 1001, above this offer.
    await make_load("LD001", loadboard_rate=1000.50, max_rate=1001.50)
    call = (await client.post("/api/calls", json={"load_id": "LD001"})).json()
    first = await offer_ok(client, call["id"], 1000.90, "s")
    assert first["decision"] == "accept" and first["agreed_rate"] == 1000.9
    await make_load("LD002", loadboard_rate=1000.50, max_rate=1001.50)  # LD001 is booked now
    other = (await client.post("/api/calls", json={"load_id": "LD002"})).json()
    countered = await offer_ok(client, other["id"], 1001.40, "s2")
    assert countered["decision"] == "counter" and countered["counter_offer"] == 1001
