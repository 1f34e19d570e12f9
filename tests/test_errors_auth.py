"""The error envelope for every 4xx/5xx, request ids, API keys, validation of offers, health."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from negotiation.settings import Settings
from tests.conftest import API_KEY, LOAD
from tests.helpers import Client, assert_error, client_for, negotiate, with_settings

Make = Callable[..., Awaitable[dict[str, Any]]]

#: One request per /api route (method, path, body), with ids that exist after ``_seed``.
API_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/api/loads", {**LOAD, "load_id": "LD9"}),
    ("GET", "/api/loads", None),
    ("GET", "/api/loads/LD1", None),
    ("POST", "/api/calls", {"load_id": "LD1"}),
    ("GET", "/api/calls/1", None),
    ("POST", "/api/calls/1/negotiate", {"carrier_offer": 2000}),  # accepted: books LD1
    ("POST", "/api/loads/LD1/release", {"reason": "fell through"}),
    ("PATCH", "/api/calls/1", {"notes": "handed over"}),
    ("GET", "/api/calls/1/negotiations", None),
    ("GET", "/api/negotiations/session/s1", None),
    ("GET", "/api/negotiations", None),
]


async def _seed(client: Client) -> None:
    assert (await client.post("/api/loads", json={**LOAD, "load_id": "LD1"})).status_code == 201
    call = (await client.post("/api/calls", json={"load_id": "LD1"})).json()
    assert call["id"] == 1
    response = await negotiate(client, 1, 2500, "s1")
    assert response.status_code == 201


async def test_every_api_route_needs_a_valid_key(client: Client) -> None:
    await _seed(client)
    for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "wrong"}, {"X-API-Key": API_KEY + " "}):
        for method, path, body in API_ROUTES:
            del client.headers["X-API-Key"]
            response = await client.request(method, path, json=body, headers=headers)
            client.headers["X-API-Key"] = API_KEY
            assert_error(response, 401, "UNAUTHORIZED")
    # Nothing was done by the refused requests.
    assert len((await client.get("/api/negotiations")).json()["items"]) == 1
    assert (await client.get("/api/calls/1")).json()["outcome"] == "negotiating"
    # And every route works with the key.
    for method, path, body in API_ROUTES:
        response = await client.request(method, path, json=body)
        assert response.status_code in (200, 201), (method, path, response.text)


async def test_any_configured_key_works(settings: Settings) -> None:
    keys = with_settings(settings, api_keys=("first-key", "second-key"))
    async with client_for(keys) as client:
        for key, status in (("first-key", 200), ("second-key", 200), (API_KEY, 401)):
            response = await client.get("/api/loads", headers={"X-API-Key": key})
            assert response.status_code == status


async def test_development_default_key(settings: Settings) -> None:
    async with client_for(with_settings(settings, api_keys=())) as client:
        ok = await client.get("/api/loads", headers={"X-API-Key": "default-api-key"})
        assert ok.status_code == 200
        assert_error(await client.get("/api/loads"), 401, "UNAUTHORIZED")  # the test key


def test_production_refuses_to_start_without_keys() -> None:
    with pytest.raises(ValueError, match="NEGOTIATION_API_KEYS"):
        Settings(env="production", api_keys=())
    assert Settings(env="production", api_keys="a, b").api_keys[1].get_secret_value() == "b"


async def test_request_id_is_echoed_or_generated(client: Client) -> None:
    for path in ("/health", "/api/loads", "/api/loads/NOPE", "/nope"):
        echoed = await client.get(path, headers={"X-Request-ID": "req-42.abc_DEF"})
        assert echoed.headers["x-request-id"] == "req-42.abc_DEF"
        if echoed.status_code >= 400:
            assert echoed.json()["request_id"] == "req-42.abc_DEF"
        for bad in ("has space", "x" * 129, "semi;colon"):
            generated = await client.get(path, headers={"X-Request-ID": bad})
            assert generated.headers["x-request-id"] not in ("", bad)
        fresh = [(await client.get(path)).headers["x-request-id"] for _ in range(2)]
        assert fresh[0] != fresh[1]


async def test_unknown_route_and_wrong_method(client: Client) -> None:
    for path in ("/nope", "/api/nope", "/api/loads/LD1/extra"):
        body = assert_error(await client.get(path), 404, "NOT_FOUND")
        assert path in body["error"]["message"]
    for method, path in (("DELETE", "/api/loads"), ("PUT", "/health"), ("DELETE", "/api/calls/1")):
        response = await client.request(method, path)
        body = assert_error(response, 405, "METHOD_NOT_ALLOWED")
        assert method in body["error"]["message"]
        assert "GET" in response.headers["allow"]
    unauthenticated = await client.get("/nope", headers={"X-API-Key": "wrong"})
    assert_error(unauthenticated, 404, "NOT_FOUND")


async def test_malformed_json_is_invalid_json(client: Client, make_call: Make) -> None:
    call = await make_call()
    for raw in (b"{", b'{"carrier_offer": 2000,}', b"carrier_offer=2000", b'{"a": 1} x', b"\xff"):
        for url in (f"/api/calls/{call['id']}/negotiate", "/api/loads", "/api/calls"):
            response = await client.post(
                url, content=raw, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 400, (raw, url, response.text)
            assert_error(response, 400, "INVALID_JSON")


BAD_OFFERS: list[tuple[str, bytes]] = [
    ("missing", b'{"session_id": "s1"}'),
    ("null", b'{"carrier_offer": null}'),
    ("zero", b'{"carrier_offer": 0}'),
    ("negative", b'{"carrier_offer": -2000}'),
    ("NaN token", b'{"carrier_offer": NaN}'),
    ("Infinity token", b'{"carrier_offer": Infinity}'),
    ("-Infinity token", b'{"carrier_offer": -Infinity}'),
    ("1e309", b'{"carrier_offer": 1e309}'),
    ("NaN string", b'{"carrier_offer": "NaN"}'),
    ("Infinity string", b'{"carrier_offer": "Infinity"}'),
    ("over 10,000,000", b'{"carrier_offer": 10000000.01}'),
    ("far over", b'{"carrier_offer": 1e30}'),
    ("three decimals", b'{"carrier_offer": 2300.123}'),
    ("tiny", b'{"carrier_offer": 1e-7}'),
    ("currency string", b'{"carrier_offer": "$2,300"}'),
    ("exponent string", b'{"carrier_offer": "2.3e3"}'),
    ("three decimals string", b'{"carrier_offer": "2300.001"}'),
    ("boolean", b'{"carrier_offer": true}'),
    ("object", b'{"carrier_offer": {"amount": 2300}}'),
    ("long notes", b'{"carrier_offer": 2300, "notes": "' + b"n" * 2001 + b'"}'),
    ("notes not text", b'{"carrier_offer": 2300, "notes": 5}'),
    ("empty body", b""),
    ("array body", b"[2300]"),
]


async def test_every_bad_offer_is_a_validation_error(client: Client, make_call: Make) -> None:
    call = await make_call()
    url = f"/api/calls/{call['id']}/negotiate"
    for name, raw in BAD_OFFERS:
        response = await client.post(url, content=raw, headers={"Content-Type": "application/json"})
        body = assert_error(response, 422, "VALIDATION_ERROR")
        if name not in ("empty body", "array body"):
            key = "notes" if "notes" in name else "carrier_offer"
            assert key in body["error"]["message"], (name, body)
            assert body["error"]["details"][0]["key"] == key, (name, body)
        if name == "empty body":
            assert "body" in body["error"]["message"], body
    assert (await client.get(f"/api/calls/{call['id']}")).json()["negotiation_rounds"] == 0
    boundary = await client.post(url, json={"carrier_offer": 10_000_000, "notes": "n" * 2000})
    assert boundary.status_code == 201, boundary.text


async def test_nul_characters_are_refused_everywhere(client: Client, make_call: Make) -> None:
    """PostgreSQL cannot hold NUL in text: refused up front on both databases, never a 500."""
    call = await make_call()
    cid = call["id"]
    for method, url, body in [
        ("GET", "/api/loads/LD%00", None),
        ("GET", "/api/loads?origin=Chi%00cago", None),
        ("GET", "/api/negotiations/session/s%00", None),
        ("POST", "/api/loads", {**LOAD, "load_id": "LD1", "origin": "Chi\x00cago"}),
        ("POST", "/api/calls", {"load_id": "LD\x00"}),
        ("POST", "/api/calls", {"load_id": call["load_id"], "carrier_mc_number": "MC\x00"}),
        ("PATCH", f"/api/calls/{cid}", {"notes": "a\x00b"}),
        ("POST", f"/api/calls/{cid}/negotiate", {"carrier_offer": 2500, "notes": "\x00"}),
        ("POST", f"/api/calls/{cid}/negotiate", {"carrier_offer": 2500, "call_id": "1\x00"}),
    ]:
        response = await client.request(method, url, json=body)
        assert response.status_code == 422, (url, body, response.text)
        code = response.json()["error"]["code"]
        assert code in ("VALIDATION_ERROR", "INVALID_SESSION_ID"), response.text
        assert_error(response, 422, code)
    assert (await client.get(f"/api/calls/{cid}")).json()["negotiation_rounds"] == 0


async def test_session_named_in_a_refused_body_is_echoed(client: Client, make_call: Make) -> None:
    call = await make_call()
    response = await negotiate(client, call["id"], -1, "sess_echo")
    body = assert_error(response, 422, "VALIDATION_ERROR")
    assert body["session_id"] == "sess_echo"
    assert response.headers["x-session-id"] == "sess_echo"


async def test_session_header_and_query_are_echoed_on_errors(client: Client) -> None:
    response = await client.get("/api/calls/77/negotiations", params={"session_id": "q-sess"})
    assert assert_error(response, 404, "CALL_NOT_FOUND")["session_id"] == "q-sess"
    assert response.headers["x-session-id"] == "q-sess"
    response = await client.get("/api/loads/NOPE", headers={"X-Session-ID": "h-sess"})
    assert assert_error(response, 404, "LOAD_NOT_FOUND")["session_id"] == "h-sess"
    assert response.headers["x-session-id"] == "h-sess"


async def test_unexpected_errors_reveal_nothing(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("SELECT secret_column FROM secret_table -- password=hunter2")

    monkeypatch.setattr("negotiation.controllers.loads.load_detail", broken)
    response = await client.get("/api/loads/LD1")
    assert_error(response, 500, "INTERNAL_ERROR")
    assert "secret" not in response.text and "hunter2" not in response.text
    assert any("RuntimeError" in (r.exc_text or "") for r in caplog.records if r.exc_info)


def _unreachable(database_url: str, tmp_path: Any) -> str:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{tmp_path}/no/such/dir/loads.db"
    return url.set(port=1, password="hunter2").render_as_string(hide_password=False)


async def test_health(client: Client) -> None:
    response = await client.get("/health", headers={"X-API-Key": ""})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert isinstance(body["version"], str) and body["version"]


async def test_unreachable_database_is_503_everywhere(settings: Settings, tmp_path: Any) -> None:
    down = with_settings(settings, database_url=_unreachable(settings.database_url, tmp_path))
    async with client_for(down) as client:
        health = await client.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "unavailable"
        assert body["database"] and body["database"] != "ok"
        assert "hunter2" not in health.text and "version" in body
        for method, path, payload in API_ROUTES:
            response = await client.request(method, path, json=payload)
            assert_error(response, 503, "DATABASE_UNAVAILABLE")
            assert "hunter2" not in response.text
            assert response.headers["retry-after"]
