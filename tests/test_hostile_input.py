"""Hostile input: oversized, deep, mistyped, malformed, injected and control-laden requests.

Each gets a clear 4xx in the contract's envelope and records nothing; strings that look like
SQL or paths are stored and returned exactly as sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests import dbutil
from tests.helpers import concurrent_client

Client = AsyncTestClient[Litestar]
JSON = {"Content-Type": "application/json"}

INJECTIONS = [
    "'; DROP TABLE negotiations; --",
    '" OR "1"="1',
    "1' OR '1'='1' /*",
    "Robert'); DELETE FROM calls WHERE ('1'='1",
    "../../../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "<script>alert(1)</script>",
    "${jndi:ldap://x/a}",
]


def error_code(response: Any) -> str:
    body = response.json()
    assert body["success"] is False and body["request_id"], body
    code: str = body["error"]["code"]
    return code


def post_raw_offer(client: Client, call: dict[str, Any], offer: bytes) -> Any:
    """POST an offer spelled exactly as given (``NaN``, ``1e309``, ``"2300"``, ...)."""
    body = b'{"carrier_offer": ' + offer + b"}"
    return client.post(f"/api/calls/{call['id']}/negotiate", content=body, headers=JSON)


async def rows(database_url: str, table: str) -> int:
    return int((await dbutil.execute(database_url, f"SELECT count(*) FROM {table}"))[0][0])


async def test_bodies_over_64_kib_are_413(client: Client, make_call: Any, app: Litestar) -> None:
    call = await make_call()
    big = b'{"carrier_offer": 2100, "notes": "' + b"x" * 70_000 + b'"}'
    r = await client.post(f"/api/calls/{call['id']}/negotiate", content=big, headers=JSON)
    assert r.status_code == 413 and error_code(r) == "PAYLOAD_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"metadata": {"blob": "'
        for _ in range(20):
            yield b"y" * 4096
        yield b'"}}'

    async with concurrent_client(app) as (streaming, _):
        r = await streaming.post("/api/sessions", content=chunks(), headers=JSON)
        assert r.status_code == 413 and error_code(r) == "PAYLOAD_TOO_LARGE"
        assert (await streaming.get("/api/sessions")).json()["items"] == []


@pytest.mark.parametrize("depth", [33, 1_000, 20_000])
async def test_deeply_nested_json_is_refused(client: Client, depth: int) -> None:
    body = b'{"metadata": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
    r = await client.post("/api/sessions", content=body, headers=JSON)
    assert r.status_code == 422 and error_code(r) == "VALIDATION_ERROR", r.text
    assert "nest" in r.json()["error"]["message"]


async def test_huge_or_deep_metadata_is_refused(client: Client) -> None:
    nine_levels: dict[str, Any] = {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}
    for metadata in ({"blob": "z" * 16_500}, nine_levels):
        r = await client.post("/api/sessions", json={"metadata": metadata})
        assert r.status_code == 422 and error_code(r) == "VALIDATION_ERROR", r.text
    assert (await client.get("/api/sessions")).json()["items"] == []


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/xml"],
)
async def test_bodies_not_sent_as_json_are_415(
    client: Client, make_call: Any, content_type: str
) -> None:
    call = await make_call()
    for method, url in (
        ("POST", f"/api/calls/{call['id']}/negotiate"),
        ("POST", "/api/sessions"),
        ("PATCH", f"/api/calls/{call['id']}"),
    ):
        body = b'{"carrier_offer": 2100}' if "negotiate" in url else b"{}"
        r = await client.request(method, url, content=body, headers={"Content-Type": content_type})
        assert r.status_code == 415, (url, r.text)
        assert error_code(r) == "UNSUPPORTED_MEDIA_TYPE"
        assert "application/json" in r.json()["error"]["message"]


async def test_json_content_types_are_accepted(client: Client, make_call: Any) -> None:
    call = await make_call()
    url = f"/api/calls/{call['id']}/negotiate"
    for content_type in ("application/json; charset=utf-8", "application/vnd.broker+json"):
        r = await client.post(
            url, content=b'{"carrier_offer": 2500}', headers={"Content-Type": content_type}
        )
        assert r.status_code == 201, r.text
    missing = await client.post(
        url, content=b'{"carrier_offer": 2500}', headers={"Content-Type": ""}
    )
    assert missing.status_code == 415
    assert (await client.post("/api/sessions")).status_code == 201, "no body, no content type"


@pytest.mark.parametrize(
    "body",
    [
        b'{"carrier_offer": ',
        b'{"carrier_offer": 2100} trailing',
        b"{'carrier_offer': 2100}",
        b'{"carrier_offer": 2100,}',
        b'{"notes": "\xff\xfe", "carrier_offer": 2100}',
        b'{"notes": "\\ud800", "carrier_offer": 2100}',
        b'{"carrier_offer": 0x10}',
    ],
    ids=[
        "truncated",
        "trailing",
        "single-quotes",
        "trailing-comma",
        "bad-utf8",
        "surrogate",
        "hex",
    ],
)
async def test_malformed_json_is_400_invalid_json(
    client: Client, make_call: Any, database_url: str, body: bytes
) -> None:
    call = await make_call()
    r = await client.post(f"/api/calls/{call['id']}/negotiate", content=body, headers=JSON)
    assert r.status_code == 400 and error_code(r) == "INVALID_JSON", r.text
    assert await rows(database_url, "negotiations") == 0


@pytest.mark.parametrize(
    "offer",
    [
        b'"$2,300"', b'"2,300"', b'"2300.001"', b'"2e3"', b'" 2300"', b'"abc"', b'""',
        b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-1e309", b"-0", b"-0.0",
        b"0", b"true", b"null", b"[2300]", b"2300.001", b"10000000.01", b"-2300",
    ],
)  # fmt: skip
async def test_offers_that_are_not_valid_amounts_are_422(
    client: Client, make_call: Any, database_url: str, offer: bytes
) -> None:
    r = await post_raw_offer(client, await make_call(), offer)
    assert r.status_code == 422 and error_code(r) == "VALIDATION_ERROR", r.text
    assert await rows(database_url, "negotiations") == 0


@pytest.mark.parametrize(
    ("offer", "stored"),
    [
        (b"1e2", 100.0),
        (b"2300.10", 2300.1),
        (b"10000000", 1e7),
        (b'"1900"', 1900.0),
        (b'"2300.10"', 2300.1),
        (b'"0.5"', 0.5),
    ],
)
async def test_valid_number_spellings_are_accepted(
    client: Client, make_call: Any, offer: bytes, stored: float
) -> None:
    r = await post_raw_offer(client, await make_call(), offer)
    assert r.status_code == 201 and r.json()["carrier_offer"] == stored, r.text


async def test_sql_and_path_lookalikes_are_stored_and_returned_literally(
    client: Client, make_load: Any, database_url: str
) -> None:
    for i, text in enumerate(INJECTIONS):
        load = await make_load(f"LD-INJ-{i}", origin=text, notes=text, commodity_type=text[:255])
        assert load["origin"] == text and load["notes"] == text
        call = (
            await client.post(
                "/api/calls",
                json={"load_id": load["load_id"], "carrier_mc_number": text[:32], "notes": text},
            )
        ).json()
        assert call["notes"] == text and call["carrier_mc_number"] == text[:32]
        r = await client.post(
            f"/api/calls/{call['id']}/negotiate", json={"carrier_offer": 2500, "notes": text}
        )
        assert r.status_code == 201 and r.json()["notes"] == text
        s = await client.post(
            "/api/sessions", json={"client_id": text, "metadata": {text: text, "k": [text]}}
        )
        assert s.status_code == 201, s.text
        got = (await client.get(f"/api/sessions/{s.json()['session_id']}")).json()
        assert got["client_id"] == text and got["metadata"] == {text: text, "k": [text]}
        found = (await client.get("/api/loads", params={"origin": text})).json()["items"]
        assert [x["load_id"] for x in found] == [f"LD-INJ-{i}"], "matched literally, nothing more"
    assert await rows(database_url, "negotiations") == len(INJECTIONS)
    assert await rows(database_url, "calls") == len(INJECTIONS)


@pytest.mark.parametrize(
    "path",
    [
        "/api/loads/..%2F..%2Fetc%2Fpasswd",
        "/api/loads/%2e%2e",
        "/api/calls/1%20OR%201=1",
        "/api/calls/-1",
        "/api/calls/99999999999999999999999",
        "/api/sessions/..%2F..%2Fetc",
        "/api/negotiations/session/%00",
        "/api/sessions/%2e%2e%2fsecret",
    ],
)
async def test_hostile_paths_are_4xx_never_5xx(client: Client, path: str) -> None:
    r = await client.get(path)
    assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
    assert r.json()["success"] is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("notes", "nul\x00byte"),
        ("notes", "bell\x07"),
        ("notes", "escape\x1b[31m"),
        ("notes", "c1\x85control"),
        ("session_id", "sess\x00"),
        ("notes", "n" * 2001),
    ],
)
async def test_control_characters_and_over_long_text_in_rounds_are_422(
    client: Client, make_call: Any, database_url: str, field: str, value: str
) -> None:
    call = await make_call()
    r = await client.post(
        f"/api/calls/{call['id']}/negotiate", json={"carrier_offer": 2500, field: value}
    )
    assert r.status_code == 422, r.text
    assert error_code(r) in ("VALIDATION_ERROR", "INVALID_SESSION_ID")
    assert await rows(database_url, "negotiations") == 0


@pytest.mark.parametrize(
    ("url", "payload"),
    [
        ("/api/sessions", {"client_id": "crm\x00"}),
        ("/api/sessions", {"client_id": "c" * 256}),
        ("/api/sessions", {"metadata": {"k": "v\x00"}}),
        ("/api/sessions", {"metadata": {"k\x01": "v"}}),
        ("/api/loads", {"load_id": "LD\x00X"}),
        ("/api/loads", {"load_id": "L" * 65}),
        ("/api/loads", {"load_id": "LD-C1", "origin": "Chi\x00cago"}),
        ("/api/loads", {"load_id": "LD-C2", "origin": "o" * 256}),
        ("/api/calls", {"load_id": "LD\x00"}),
        ("/api/calls", {"load_id": "LD-X", "carrier_mc_number": "MC\n1"}),
    ],
)
async def test_control_characters_and_over_long_strings_elsewhere_are_422(
    client: Client, url: str, payload: dict[str, Any]
) -> None:
    base = {
        "/api/loads": {
            "origin": "A", "destination": "B", "equipment_type": "Van", "loadboard_rate": 2000,
            "pickup_datetime": "2026-12-01T08:00:00Z", "delivery_datetime": "2026-12-02T08:00:00Z",
        },
    }.get(url, {})  # fmt: skip
    r = await client.post(url, json={**base, **payload})
    assert r.status_code == 422 and error_code(r) == "VALIDATION_ERROR", r.text


async def test_free_text_keeps_tabs_and_line_breaks(client: Client, make_call: Any) -> None:
    call = await make_call()
    text = "line one\r\nline two\ttabbed"
    r = await client.post(
        f"/api/calls/{call['id']}/negotiate", json={"carrier_offer": 2500, "notes": text}
    )
    assert r.status_code == 201 and r.json()["notes"] == text


async def test_a_nul_in_a_query_filter_is_never_a_5xx(client: Client, database_url: str) -> None:
    r = await client.get("/api/loads", params={"origin": "a\x00b"})
    if r.status_code == 200:  # SQLite can hold a NUL: the filter just matches nothing
        assert database_url.startswith("sqlite") and r.json()["items"] == []
    else:  # PostgreSQL text cannot hold NUL at all
        assert r.status_code == 422 and error_code(r) == "VALIDATION_ERROR", r.text
