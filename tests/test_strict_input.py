"""Nothing a client sends is silently dropped: unknown fields and query parameters, the
``X-Session-ID`` header, money as strings, and the plain sentences every refusal is worded in.
Each refused request records nothing.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import LOAD
from tests.helpers import Client, assert_error, concrete, count, negotiate, offer_ok, operations

Make = Callable[..., Awaitable[dict[str, Any]]]


def detail_keys(body: dict[str, Any]) -> list[str]:
    return [d["key"] for d in body["error"]["details"]]


UNKNOWN_FIELDS: list[tuple[str, str, dict[str, Any], str, str]] = [
    # (method, path, body, unknown field, the suggestion)
    ("POST", "/api/calls/1/negotiate", {"carrier_offer": 2300, "sessionId": "s1"}, "sessionId",
     "session_id"),
    ("POST", "/api/loads", {**LOAD, "load_id": "LD2", "maxRate": 2500}, "maxRate", "max_rate"),
    ("POST", "/api/calls", {"load_id": "LD1", "carrier_mc": "MC1"}, "carrier_mc",
     "carrier_mc_number"),
    ("PATCH", "/api/calls/1", {"outcom": "accepted"}, "outcom", "outcome"),
    ("POST", "/api/sessions", {"session_id": "s2", "ttl": 60}, "ttl", "ttl_seconds"),
]  # fmt: skip


async def test_unknown_body_fields_are_named_with_the_nearest_known_one(
    client: Client, make_load: Make, make_call: Make, database_url: str
) -> None:
    await make_load("LD1")
    assert (await make_call("LD1"))["id"] == 1
    for method, path, body, unknown, near in UNKNOWN_FIELDS:
        response = await client.request(method, path, json=body)
        error = assert_error(response, 422, "VALIDATION_ERROR")
        message = error["error"]["message"]
        assert f"`{unknown}`" in message and f"did you mean `{near}`?" in message, message
        assert error["error"]["details"] == [{"key": unknown, "message": message, "source": "body"}]
    # A name nothing resembles lists the known ones instead.
    response = await negotiate(client, 1, 2300, None, zzz=1)
    message = assert_error(response, 422, "VALIDATION_ERROR")["error"]["message"]
    assert "Unknown field `zzz`" in message and "`carrier_offer`" in message, message
    assert (await count(database_url, "negotiations"), await count(database_url, "loads")) == (0, 1)
    assert await count(database_url, "sessions") == 0
    assert (await client.get("/api/calls/1")).json()["outcome"] == "negotiating"


async def test_unknown_query_parameters_on_every_operation(
    client: Client, make_call: Make, database_url: str
) -> None:
    await make_call()
    for method, path in await operations(client):
        url = concrete(path)
        response = await client.request(method, url, params={"zzz_unknown": "1"})
        body = assert_error(response, 422, "VALIDATION_ERROR")
        assert "Unknown query parameter `zzz_unknown`" in body["error"]["message"], (url, body)
        assert body["error"]["details"][0]["source"] == "query"
    assert await count(database_url, "negotiations") == 0


QUERY_TYPOS = [
    ("GET", "/api/negotiations", {"sesion_id": "nope"}, "session_id"),
    ("GET", "/api/negotiations", {"callId": "1"}, "call_id"),
    ("GET", "/api/loads", {"orign": "Chicago, IL"}, "origin"),
    ("GET", "/api/calls/1/negotiations", {"sessionid": "s1"}, "session_id"),
    ("GET", "/api/sessions", {"stauts": "active"}, "status"),
    ("GET", "/api/reports/summary", {"load": "LD1"}, "load_id"),
    ("DELETE", "/api/sessions/s1", {"purged": "true"}, "purge"),
]


async def test_query_typos_are_refused_not_ignored(
    client: Client, make_call: Make, database_url: str
) -> None:
    call = await make_call()
    assert call["id"] == 1
    await offer_ok(client, 1, 2500, "s1")
    for method, path, params, near in QUERY_TYPOS:
        response = await client.request(method, path, params=params)
        body = assert_error(response, 422, "VALIDATION_ERROR")
        [name] = params
        assert f"`{name}`; did you mean `{near}`?" in body["error"]["message"], body
    # The round and its session are still there: the typo'd purge did nothing.
    assert await count(database_url, "negotiations") == 1
    # A query parameter on a route that takes none: not recorded either.
    response = await client.post("/api/calls/1/negotiate?session_id=s1", json={"carrier_offer": 1})
    body = assert_error(response, 422, "VALIDATION_ERROR")
    assert (
        body["error"]["message"] == "Unknown query parameter `session_id`; this route takes none."
    )
    assert await count(database_url, "negotiations") == 1


BAD_HEADERS: list[tuple[bytes, str]] = [
    (b"bad id", "'bad id'"),
    (b"x" * 200, "'" + "x" * 40 + "…'"),
    ("héllo".encode(), "is not valid"),
    (b"", "''"),
]


async def test_a_malformed_session_header_is_refused(
    client: Client, make_call: Make, database_url: str
) -> None:
    call = await make_call()
    for header, shown in BAD_HEADERS:
        for method, url, body in (
            ("POST", f"/api/calls/{call['id']}/negotiate", {"carrier_offer": 2300}),
            ("GET", "/api/negotiations", None),
            ("POST", "/api/sessions", {}),
        ):
            response = await client.request(
                method, url, json=body, headers={b"X-Session-ID": header}
            )
            error = assert_error(response, 422, "INVALID_SESSION_ID")
            message = error["error"]["message"]
            assert shown in message and "X-Session-ID" in message, message
            assert "1-128 characters" in message
            assert error["session_id"] is None and "x-session-id" not in response.headers
    assert await count(database_url, "negotiations") == 0
    assert await count(database_url, "sessions") == 0
    assert (await client.get(f"/api/calls/{call['id']}")).json()["negotiation_rounds"] == 0


async def test_a_session_header_that_disagrees_is_refused(
    client: Client, make_call: Make, database_url: str
) -> None:
    call = await make_call()
    url = f"/api/calls/{call['id']}/negotiate"
    header = {"X-Session-ID": "sess-b"}
    for method, target, body, where in (
        ("POST", url, {"carrier_offer": 2300, "session_id": "sess-a"}, "the body's session_id"),
        ("GET", "/api/negotiations?session_id=sess-a", None, "the query's session_id"),
        ("GET", f"/api/calls/{call['id']}/negotiations?session_id=sess-a", None, "the query's"),
        ("GET", "/api/sessions/sess-a", None, "the URL"),
        ("DELETE", "/api/sessions/sess-a?purge=true", None, "the URL"),
        ("POST", "/api/sessions", {"session_id": "sess-a"}, "the body's session_id"),
    ):
        response = await client.request(method, target, json=body, headers=header)
        message = assert_error(response, 422, "SESSION_ID_MISMATCH")["error"]["message"]
        assert "'sess-b'" in message and "'sess-a'" in message and where in message, message
    assert await count(database_url, "negotiations") == 0
    assert await count(database_url, "sessions") == 0
    # Agreeing, or the header alone: the round goes into that session.
    both = await client.post(
        url, json={"carrier_offer": 2500, "session_id": "sess-b"}, headers=header
    )
    assert both.status_code == 201 and both.json()["session_id"] == "sess-b", both.text
    alone = await client.post(url, json={"carrier_offer": 2400}, headers=header)
    assert alone.status_code == 201 and alone.json()["session_id"] == "sess-b", alone.text
    assert alone.json()["round_number"] == 2


@pytest.mark.parametrize(
    ("offer", "stored"), [("1900", 1900), ("2300.10", 2300.1), ("2300.5", 2300.5), (2300, 2300)]
)
async def test_money_may_be_a_plain_decimal_string(
    client: Client, make_call: Make, offer: Any, stored: float
) -> None:
    call = await make_call()
    body = await offer_ok(client, call["id"], offer)
    assert body["carrier_offer"] == stored and isinstance(body["carrier_offer"], float | int)
    load = await client.post("/api/loads", json={**LOAD, "load_id": "LDS", "max_rate": offer})
    assert load.status_code in (201, 422)  # below the loadboard rate is refused
    other = await make_call()
    change = {"outcome": "transferred", "final_rate_agreed": offer}
    patched = await client.patch(f"/api/calls/{other['id']}", json=change)
    assert patched.status_code == 200, patched.text
    assert patched.json()["final_rate_agreed"] == stored


BAD_AMOUNTS: list[Any] = [
    "$2,300", "2,300", "2300.123", "abc", "", " 2300", "2300 ", "2e3", "-2300", "0", "+2300",
    "NaN", "Infinity", "10000000.01", True, False, [2300], {"amount": 2300}, 0, -1, 2300.123,
]  # fmt: skip


async def test_anything_else_is_refused_showing_a_valid_amount(
    client: Client, make_call: Make, database_url: str
) -> None:
    call = await make_call()
    for amount in BAD_AMOUNTS:
        for method, url, body, field in (
            ("POST", f"/api/calls/{call['id']}/negotiate", {"carrier_offer": amount},
             "carrier_offer"),
            ("POST", "/api/loads", {**LOAD, "load_id": "LDX", "loadboard_rate": amount},
             "loadboard_rate"),
            ("PATCH", f"/api/calls/{call['id']}", {"final_rate_agreed": amount},
             "final_rate_agreed"),
        ):  # fmt: skip
            response = await client.request(method, url, json=body)
            error = assert_error(response, 422, "VALIDATION_ERROR")["error"]
            assert error["message"].startswith(f"`{field}` must be an amount like 2300 or 2300.50")
            assert "at most two decimals" in error["message"], error
    assert await count(database_url, "negotiations") == 0
    assert await count(database_url, "loads") == 1
    assert (await client.get(f"/api/calls/{call['id']}")).json()["final_rate_agreed"] is None


async def test_messages_are_plain_sentences_listing_every_failure(
    client: Client, make_call: Make
) -> None:
    call = await make_call()
    cid = call["id"]
    cases: list[tuple[str, str, Any, list[str]]] = [
        ("PATCH", f"/api/calls/{cid}", {"sentiment": "maybe"},
         ["`sentiment` must be one of", "'positive'", "'neutral'", "'negative'"]),
        ("PATCH", f"/api/calls/{cid}", {"transferred_to_rep": "perhaps"},
         ["`transferred_to_rep` must be true or false"]),
        ("GET", "/api/negotiations?decision=maybe", None,
         ["`decision` must be one of 'accept', 'counter', 'reject'"]),
        ("GET", "/api/negotiations?limit=0", None, ["`limit` must be a whole number from 1 to"]),
        ("GET", "/api/negotiations?since=yesterday", None, ["`since` must be a date and time"]),
        ("DELETE", "/api/sessions/s1?purge=maybe", None, ["`purge` must be true or false"]),
        ("GET", "/api/calls/0", None, ["`call_id` must be a whole number from 1 to"]),
        ("POST", "/api/loads", {**LOAD, "load_id": "a b"},
         ["`load_id` may contain only letters, digits"]),
        ("POST", "/api/loads", {**LOAD, "load_id": "LDY", "origin": 5}, ["`origin` must be text"]),
        ("POST", "/api/sessions", {"ttl_seconds": 0}, ["`ttl_seconds` must be at least 1"]),
        ("POST", "/api/sessions", {"metadata": []}, ["`metadata` must be a JSON object"]),
        ("POST", "/api/calls", {}, ["`load_id` is required"]),
        ("POST", "/api/calls", [1], ["The body must be a JSON object"]),
        ("GET", "/api/sessions/bad%20id", None, ["The session id 'bad id'", "is not valid"]),
    ]  # fmt: skip
    for method, url, body, words in cases:
        response = await client.request(method, url, json=body)
        assert response.status_code == 422, (url, body, response.text)
        error = assert_error(response, 422, response.json()["error"]["code"])["error"]
        for word in words:
            assert word in error["message"], (url, body, error)
    # Every failure is kept in details; the message is the first, in words.
    response = await client.patch(
        f"/api/calls/{cid}", json={"sentiment": "maybe", "outcome": "won", "notes": 5, "x": 1}
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")["error"]
    assert sorted(detail_keys({"error": error})) == ["notes", "outcome", "sentiment", "x"]
    assert error["message"] == error["details"][0]["message"]
    assert all(d["message"].endswith((".", "?")) for d in error["details"]), error
    response = await client.get("/api/negotiations?limit=0&decision=maybe&call_id=x")
    error = assert_error(response, 422, "VALIDATION_ERROR")["error"]
    assert sorted(detail_keys({"error": error})) == ["call_id", "decision", "limit"]
    assert {d["source"] for d in error["details"]} == {"query"}


async def test_every_request_body_says_it_refuses_unknown_fields(client: Client) -> None:
    """The OpenAPI document tells clients (and schemathesis) so; a body model that does not
    derive from ``RequestBody`` fails here."""
    document = (await client.get("/schema/openapi.json")).json()
    bodies = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                text = str(media["schema"])
                bodies += [(method, path, ref) for ref in re.findall(r"schemas/(\w+)", text)]
    assert len(bodies) >= 5, bodies
    for method, path, name in bodies:
        schema = document["components"]["schemas"][name]
        assert schema.get("additionalProperties") is False, (method, path, name)
