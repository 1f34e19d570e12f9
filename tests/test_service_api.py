"""The Python service API ``handle_negotiation`` on a migrated database; the OpenAPI document."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import negotiation
from negotiation.errors import ApiError
from negotiation.settings import Settings
from tests import dbutil
from tests.helpers import Client

Make = Callable[..., Awaitable[dict[str, Any]]]


async def test_handle_negotiation_records_and_decides(
    client: Client, make_call: Make, settings: Settings
) -> None:
    call = await make_call()  # L = 2000, C = 2200, N = 3

    def handle(offer: Any, session_id: str | None = "sess-py") -> tuple[bool, str, bool]:
        return negotiation.handle_negotiation(call["id"], offer, session_id, settings=settings)

    assert await asyncio.to_thread(handle, 2500) == (
        False,
        "We can do $2,066.00 on this load.",
        False,
    )
    assert await asyncio.to_thread(handle, "2300.10") == (
        False,
        "We can do $2,133.00 on this load.",
        False,
    )
    accepted, message, final = await asyncio.to_thread(handle, 2150.0)
    assert (accepted, final) == (True, True)
    assert message == (
        "Great, we can book this load at $2,150.00. Let me transfer you to a rep to finalize it."
    )
    # A refusal is a business outcome: a tuple with the HTTP API's message, nothing raised.
    closed = await asyncio.to_thread(handle, 2000)
    assert closed[0] is False and closed[2] is True and closed[1], closed

    rows = (await client.get("/api/negotiations/session/sess-py")).json()
    assert [(r["round_number"], r["carrier_offer"], r["decision"]) for r in rows] == [
        (1, 2500, "counter"),
        (2, 2300.1, "counter"),
        (3, 2150, "accept"),
    ]
    read = (await client.get(f"/api/calls/{call['id']}")).json()
    assert (read["outcome"], read["final_rate_agreed"]) == ("accepted", 2150)


async def test_handle_negotiation_rejects_on_the_last_round(
    client: Client, make_call: Make, settings: Settings
) -> None:
    call = await make_call()
    results: list[tuple[bool, str, bool]] = [
        await asyncio.to_thread(
            negotiation.handle_negotiation, call["id"], 9000, None, settings=settings
        )
        for _ in range(3)
    ]
    assert [(accepted, final) for accepted, _, final in results] == [
        (False, False),
        (False, False),
        (False, True),
    ]
    assert "$9,000.00" in results[2][1]
    rounds = (await client.get(f"/api/calls/{call['id']}/negotiations")).json()
    assert [r["session_id"] for r in rounds] == [None, None, None]


async def test_handle_negotiation_reads_the_environment(
    make_call: Make, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = await make_call()
    monkeypatch.setenv("NEGOTIATION_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NEGOTIATION_MAX_ROUNDS", "1")
    accepted, message, final = await asyncio.to_thread(
        negotiation.handle_negotiation, call["id"], 2300
    )
    assert (accepted, final) == (False, True)  # one round only: above C is refused at once
    assert message.startswith("Sorry, $2,300.00")


#: Programming errors raise: an unknown call (LookupError), invalid input (ValueError).
RAISED: list[tuple[int, Any, str | None, type[Exception], str]] = [
    (404, 2000, None, LookupError, "Call 404 not found"),
    (1, -5, None, ValueError, "carrier_offer must be an amount like 2300"),
    (1, float("nan"), None, ValueError, "got NaN"),
    (1, float("inf"), None, ValueError, "at most 10,000,000"),
    (1, "2300.123", None, ValueError, 'got "2300.123"'),
    (1, "$2,300", None, ValueError, "no currency sign"),
    (1, 10_000_000.01, None, ValueError, "at most two decimals"),
    (1, True, None, ValueError, "got true"),
    (1, 2000, "bad id!", ValueError, "The session id 'bad id!' in `session_id` is not valid"),
]


async def test_handle_negotiation_raises_only_for_programming_errors(
    client: Client, make_call: Make, settings: Settings
) -> None:
    assert (await make_call())["id"] == 1
    for call_id, offer, session_id, kind, words in RAISED:
        with pytest.raises(kind) as error:
            await asyncio.to_thread(
                negotiation.handle_negotiation, call_id, offer, session_id, settings=settings
            )
        assert type(error.value) is kind and words in str(error.value), (offer, error.value)
        assert not isinstance(error.value, ApiError)
    assert (await client.get("/api/negotiations")).json()["items"] == []


async def test_handle_negotiation_answers_refusals_with_a_tuple(
    client: Client, make_call: Make, settings: Settings
) -> None:
    """Closed or expired session, closed negotiation: (False, the API's message, True)."""
    call = await make_call()

    def handle(offer: Any, session_id: str | None) -> tuple[bool, str, bool]:
        return negotiation.handle_negotiation(call["id"], offer, session_id, settings=settings)

    assert (await client.post("/api/sessions", json={"session_id": "py-closed"})).is_success
    assert (await client.delete("/api/sessions/py-closed")).is_success
    body = {"carrier_offer": 2000, "session_id": "py-closed"}
    api = await client.post(f"/api/calls/{call['id']}/negotiate", json=body)
    assert api.status_code == 409
    assert await asyncio.to_thread(handle, 2000, "py-closed") == (
        False,
        api.json()["error"]["message"],
        True,
    )
    assert (await client.post("/api/sessions", json={"session_id": "py-expired"})).is_success
    past = dt.datetime(2020, 1, 1)
    await dbutil.execute(settings.database_url, "UPDATE sessions SET expires_at = :past", past=past)
    accepted, message, final = await asyncio.to_thread(handle, 2000, "py-expired")
    assert (accepted, final) == (False, True) and "expired" in message, message
    assert await asyncio.to_thread(handle, 9000, None) == (
        False,
        "We can do $2,066.00 on this load.",
        False,
    )
    assert (await asyncio.to_thread(handle, 2100, None))[0] is True  # a final decision
    accepted, message, final = await asyncio.to_thread(handle, 2000, None)
    assert (accepted, final) == (False, True) and "final decision" in message, message
    rounds = (await client.get(f"/api/calls/{call['id']}/negotiations")).json()
    assert len(rounds) == 2


EXPECTED_OPERATIONS = {
    "createLoad",
    "getLoad",
    "listLoads",
    "createCall",
    "getCall",
    "updateCall",
    "recordRound",
    "listCallRounds",
    "listSessionRounds",
    "queryRounds",
    "health",
    "releaseLoad",
}


async def test_openapi_document(client: Client) -> None:
    response = await client.get("/schema/openapi.json", headers={"X-API-Key": ""})
    assert response.status_code == 200
    document = response.json()
    schemes = document["components"]["securitySchemes"]
    api_key = [name for name, s in schemes.items() if s["type"] == "apiKey"]
    assert len(api_key) == 1
    scheme = schemes[api_key[0]]
    assert (scheme["in"], scheme["name"]) == ("header", "X-API-Key")

    operation_ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            assert operation.get("operationId"), (method, path)
            operation_ids.append(operation["operationId"])
            security = operation.get("security") or document.get("security") or []
            if path.startswith("/api/") or path == "/metrics":  # /metrics unless made public
                assert {api_key[0]: []} in security, (method, path)
            else:
                assert security == [], (method, path)
    assert len(operation_ids) == len(set(operation_ids))
    assert set(operation_ids) >= EXPECTED_OPERATIONS
    assert (await client.get("/schema", headers={"X-API-Key": ""})).status_code == 200
    schemas = document["components"]["schemas"]
    next_action = schemas["RoundRead"]["properties"]["next_action"]
    options = next_action.get("oneOf") or next_action.get("anyOf") or [next_action]
    enums = [set(o["enum"]) - {None} for o in options if "enum" in o]
    assert enums == [{"await_offer", "transfer_to_rep", "end_call"}]
    assert "next_action" in schemas["RoundRead"]["required"]
