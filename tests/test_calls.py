"""Calls: create, read (with the latest decision), update; path ids of every wrong shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.helpers import Client, assert_error, offer_ok, parse_timestamp

Make = Callable[..., Awaitable[dict[str, Any]]]

CALL_KEYS = {
    "id",
    "load_id",
    "carrier_mc_number",
    "external_id",
    "outcome",
    "sentiment",
    "initial_rate_offered",
    "final_rate_agreed",
    "negotiation_rounds",
    "call_start_time",
    "call_end_time",
    "call_duration",
    "transferred_to_rep",
    "notes",
    "load_status",
}


async def test_create_call_has_the_documented_shape(client: Client, make_load: Make) -> None:
    await make_load("LD001", loadboard_rate=2150.50)
    response = await client.post(
        "/api/calls",
        json={"load_id": "LD001", "carrier_mc_number": "MC123456", "external_id": "hr-call-9"},
    )
    assert response.status_code == 201, response.text
    call = response.json()
    assert set(call) == CALL_KEYS
    assert isinstance(call["id"], int)
    assert call["load_id"] == "LD001"
    assert call["carrier_mc_number"] == "MC123456"
    assert call["external_id"] == "hr-call-9"
    assert call["outcome"] == "negotiating"
    assert call["initial_rate_offered"] == 2150.5  # defaults to the load's loadboard rate
    assert (call["final_rate_agreed"], call["sentiment"], call["call_end_time"]) == (None,) * 3
    assert call["call_duration"] is None
    assert call["negotiation_rounds"] == 0
    assert call["transferred_to_rep"] is False
    parse_timestamp(call["call_start_time"])


async def test_create_call_with_explicit_initial_rate(client: Client, make_load: Make) -> None:
    await make_load("LD001")
    response = await client.post(
        "/api/calls", json={"load_id": "LD001", "initial_rate_offered": 1900.25}
    )
    assert response.status_code == 201, response.text
    assert response.json()["initial_rate_offered"] == 1900.25
    assert response.json()["carrier_mc_number"] is None


async def test_call_for_unknown_load_is_404(client: Client) -> None:
    response = await client.post("/api/calls", json={"load_id": "NOPE"})
    assert_error(response, 404, "LOAD_NOT_FOUND")


async def test_call_without_load_is_422(client: Client) -> None:
    response = await client.post("/api/calls", json={"carrier_mc_number": "MC1"})
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_duplicate_external_id_is_409(client: Client, make_call: Make) -> None:
    first = await make_call(external_id="ext-1")
    response = await client.post(
        "/api/calls", json={"load_id": first["load_id"]} | {"external_id": "ext-1"}
    )
    assert_error(response, 409, "CALL_EXISTS")


async def test_get_call_adds_last_decision_and_agreed_rate(client: Client, make_call: Make) -> None:
    call = await make_call()
    fresh = (await client.get(f"/api/calls/{call['id']}")).json()
    assert set(CALL_KEYS) <= set(fresh)
    assert (fresh["last_decision"], fresh["agreed_rate"]) == (None, None)

    await offer_ok(client, call["id"], 2150)
    countered = (await client.get(f"/api/calls/{call['id']}")).json()
    assert countered["last_decision"] == "counter"
    assert countered["negotiation_rounds"] == 1
    assert countered["outcome"] == "negotiating"

    await offer_ok(client, call["id"], 1990.5)
    accepted = (await client.get(f"/api/calls/{call['id']}")).json()
    assert accepted["last_decision"] == "accept"
    assert accepted["agreed_rate"] == accepted["final_rate_agreed"] == 1990.5
    assert accepted["outcome"] == "accepted"
    assert accepted["negotiation_rounds"] == 2


async def test_unknown_call_is_404(client: Client) -> None:
    body = assert_error(await client.get("/api/calls/999"), 404, "CALL_NOT_FOUND")
    assert "999" in body["error"]["message"]
    assert_error(
        await client.patch("/api/calls/999", json={"outcome": "abandoned"}), 404, "CALL_NOT_FOUND"
    )


async def test_patch_call_updates_outcome_and_duration(client: Client, make_call: Make) -> None:
    call = await make_call(call_start_time="2026-11-21T12:00:00Z")
    response = await client.patch(
        f"/api/calls/{call['id']}",
        json={
            "outcome": "transferred",
            "sentiment": "positive",
            "final_rate_agreed": 2100.10,
            "call_end_time": "2026-11-21T12:03:30+00:00",
            "transferred_to_rep": True,
            "notes": "Handed to Dana",
            "call_transcript": "Carrier: hello ...",
        },
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["outcome"] == "transferred"
    assert updated["sentiment"] == "positive"
    assert updated["final_rate_agreed"] == 2100.1
    assert updated["call_duration"] == 210
    assert updated["transferred_to_rep"] is True
    assert updated["notes"] == "Handed to Dana"
    read = (await client.get(f"/api/calls/{call['id']}")).json()
    assert read["call_transcript"] == "Carrier: hello ..."
    assert parse_timestamp(read["call_end_time"]).minute == 3

    partial = await client.patch(f"/api/calls/{call['id']}", json={"sentiment": "neutral"})
    assert partial.json()["outcome"] == "transferred"  # untouched fields stay


BAD_CALL_CHANGES: list[dict[str, Any]] = [
    {"outcome": "won"},
    {"sentiment": "ecstatic"},
    {"final_rate_agreed": -1},
    {"final_rate_agreed": "2000.001"},
    {"call_end_time": "2026-11-21T11:00:00Z"},  # before the call started
    {"call_end_time": "yesterday"},
    {"unknown_field": 1},
]


async def test_patch_call_rejects_bad_values(client: Client, make_call: Make) -> None:
    call = await make_call(call_start_time="2026-11-21T12:00:00Z")
    for change in BAD_CALL_CHANGES:
        response = await client.patch(f"/api/calls/{call['id']}", json=change)
        assert response.status_code == 422, (change, response.text)
        assert_error(response, 422, "VALIDATION_ERROR")
    read = (await client.get(f"/api/calls/{call['id']}")).json()
    assert (read["outcome"], read["sentiment"], read["call_end_time"]) == (
        "negotiating",
        None,
        None,
    )


BAD_PATH_IDS = ["abc", "1.5", "0", "-1", "2147483648", "99999999999999999999999", "%00", "1e3"]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PATCH", ""), ("POST", "/negotiate"), ("GET", "/negotiations")],
)
async def test_bad_path_ids_are_404_or_422_never_5xx(
    client: Client, method: str, suffix: str
) -> None:
    body = {"carrier_offer": 2000} if suffix == "/negotiate" else {"outcome": "abandoned"}
    for path_id in BAD_PATH_IDS:
        response = await client.request(
            method, f"/api/calls/{path_id}{suffix}", json=None if method == "GET" else body
        )
        assert response.status_code in (404, 422), (path_id, response.text)
        expected = {404: ("NOT_FOUND", "CALL_NOT_FOUND"), 422: ("VALIDATION_ERROR",)}
        code = response.json()["error"]["code"]
        assert code in expected[response.status_code], (path_id, response.text)
        assert_error(response, response.status_code, code)
