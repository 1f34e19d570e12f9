"""Loads: create, read, list with filters and cursor pagination (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.conftest import LOAD
from tests.helpers import Client, assert_error, parse_timestamp

MakeLoad = Callable[..., Awaitable[dict[str, Any]]]


async def test_create_load_returns_the_load(client: Client) -> None:
    body = {
        **LOAD,
        "load_id": "LD001",
        "loadboard_rate": 2300.10,
        "max_rate": 2600,
        "notes": "Fragile",
        "weight": 42000.5,
        "commodity_type": "Electronics",
        "num_of_pieces": 24,
        "miles": 925.0,
        "dimensions": "48x40x60",
    }
    response = await client.post("/api/loads", json=body)
    assert response.status_code == 201, response.text
    load = response.json()
    assert load["load_id"] == "LD001"
    assert load["loadboard_rate"] == 2300.1
    assert load["max_rate"] == 2600
    assert load["status"] == "available"
    for key in ("origin", "destination", "equipment_type", "notes", "commodity_type"):
        assert load[key] == body[key]
    assert (load["weight"], load["num_of_pieces"], load["miles"]) == (42000.5, 24, 925.0)
    assert parse_timestamp(load["pickup_datetime"]).hour == 8
    parse_timestamp(load["created_at"])

    again = await client.get("/api/loads/LD001")
    assert again.status_code == 200
    assert again.json() == load | {"bookings": []}
    assert (load["booked_call_id"], load["booked_rate"]) == (None, None)


async def test_money_is_a_json_number_never_a_string(client: Client, make_load: MakeLoad) -> None:
    await make_load("LD001", loadboard_rate=2300.10)
    raw = (await client.get("/api/loads/LD001")).text
    assert '"loadboard_rate":2300.1' in raw.replace(" ", "")


async def test_duplicate_load_is_409(client: Client, make_load: MakeLoad) -> None:
    await make_load("LD001")
    response = await client.post("/api/loads", json={**LOAD, "load_id": "LD001"})
    body = assert_error(response, 409, "LOAD_EXISTS")
    assert "LD001" in body["error"]["message"]


async def test_unknown_load_is_404(client: Client) -> None:
    body = assert_error(await client.get("/api/loads/NOPE"), 404, "LOAD_NOT_FOUND")
    assert "NOPE" in body["error"]["message"]


INVALID_LOAD_CHANGES: list[dict[str, Any]] = [
    {"loadboard_rate": 0},
    {"loadboard_rate": -5},
    {"loadboard_rate": "$2000"},
    {"loadboard_rate": 10_000_000.01},
    {"loadboard_rate": 2000.001},
    {"max_rate": 1999.99},
    {"load_id": ""},
    {"load_id": "has space"},
    {"status": "lost"},
    {"pickup_datetime": "next tuesday"},
    {"delivery_datetime": "2026-11-30T08:00:00Z"},
    {"notes": "x" * 2001},
]


async def test_invalid_load_is_422(client: Client) -> None:
    for change in INVALID_LOAD_CHANGES:
        response = await client.post("/api/loads", json={**LOAD, "load_id": "LD001", **change})
        assert response.status_code == 422, (change, response.text)
        assert_error(response, 422, "VALIDATION_ERROR")
    assert_error(await client.get("/api/loads/LD001"), 404, "LOAD_NOT_FOUND")


async def test_missing_required_field_is_422(client: Client) -> None:
    for missing in ("load_id", "origin", "loadboard_rate", "pickup_datetime"):
        body = {**LOAD, "load_id": "LD001"}
        del body[missing]
        response = await client.post("/api/loads", json=body)
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert missing in error["error"]["message"]


async def test_list_filters_and_walks_every_page(client: Client, make_load: MakeLoad) -> None:
    for i in range(7):
        await make_load(f"LD{i:03}", origin="Chicago, IL" if i % 2 == 0 else "Denver, CO")
    await make_load("LD100", status="booked")

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/loads", params=params)).json()
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= 2
        seen += [load["load_id"] for load in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"LD{i:03}" for i in range(7)] + ["LD100"]
    assert pages == 4

    chicago = (await client.get("/api/loads", params={"origin": "Chicago, IL"})).json()
    assert [x["load_id"] for x in chicago["items"]] == ["LD000", "LD002", "LD004", "LD006", "LD100"]
    assert chicago["next_cursor"] is None
    booked = (await client.get("/api/loads", params={"status": "booked"})).json()
    assert [x["load_id"] for x in booked["items"]] == ["LD100"]
    both = await client.get(
        "/api/loads",
        params={"origin": "Denver, CO", "destination": "Dallas, TX", "equipment_type": "Dry Van"},
    )
    assert [x["load_id"] for x in both.json()["items"]] == ["LD001", "LD003", "LD005"]


async def test_list_rejects_bad_limits_and_foreign_cursors(client: Client) -> None:
    for limit in (0, -1, 1001, "ten"):
        response = await client.get("/api/loads", params={"limit": limit})
        assert_error(response, 422, "VALIDATION_ERROR")
    # The last one is a well-formed cursor for the *rounds* listing: not valid for loads.
    for cursor in ("garbage", "eyJ4IjoxfQ", "WyJ2MSIsInJvdW5kcyIsNV0"):
        response = await client.get("/api/loads", params={"cursor": cursor})
        assert_error(response, 422, "INVALID_CURSOR")


async def test_list_unknown_status_is_422(client: Client) -> None:
    response = await client.get("/api/loads", params={"status": "lost"})
    assert_error(response, 422, "VALIDATION_ERROR")
