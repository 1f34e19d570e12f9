"""The API key is checked before routing: without one, every operation of the OpenAPI document
and every path under /api/ (and /mcp, /metrics) answers 401, so a client without a key cannot
tell which routes, methods or ids exist. With a key, unknown routes and methods answer as before.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import API_KEY
from tests.helpers import Client, assert_error, concrete, count, operations

NO_KEYS: list[dict[str, str]] = [{}, {"X-API-Key": ""}, {"X-API-Key": "wrong-key"}]

#: Paths and methods that exist nowhere, or not with that method, or not with that id.
UNKNOWN: list[tuple[str, str]] = [
    ("GET", "/api/anything"),
    ("GET", "/api"),
    ("DELETE", "/api/loads"),
    ("PUT", "/api/calls/1"),
    ("GET", "/api/calls/abc"),
    ("GET", "/api/calls/0"),
    ("GET", "/api/loads/LD1/extra"),
    ("POST", "/api/sessions/s1/close"),
    ("GET", "/api/negotiations?sesion_id=nope"),
    ("GET", "/api/sessions/bad%20id"),
    ("GET", "/api/../api/loads"),
    ("GET", "/mcp"),
    ("POST", "/mcp/anything"),
    ("GET", "/metrics"),
]


async def _without_key(client: Client, method: str, url: str, **kwargs: Any) -> list[Any]:
    del client.headers["X-API-Key"]
    try:
        return [await client.request(method, url, headers=h, **kwargs) for h in NO_KEYS]
    finally:
        client.headers["X-API-Key"] = API_KEY


async def test_every_documented_operation_needs_the_key(
    client: Client, make_call: Any, database_url: str
) -> None:
    await make_call()
    for method, path in await operations(client):
        if not path.startswith("/api/"):
            continue  # /health is public
        for response in await _without_key(client, method, concrete(path), json={"x": 1}):
            assert_error(response, 401, "UNAUTHORIZED")
    assert await count(database_url, "negotiations") == 0
    assert await count(database_url, "sessions") == 0


async def test_unknown_paths_and_methods_are_401_first_then_404_or_405(client: Client) -> None:
    for method, url in UNKNOWN:
        for response in await _without_key(client, method, url, content=b"not json"):
            body = assert_error(response, 401, "UNAUTHORIZED")
            assert body["error"]["message"] == "A valid X-API-Key header is required."
            assert "allow" not in response.headers
    # With the key the answers are what they were: the route table is only shown to clients.
    with_key = {
        ("GET", "/api/anything"): (404, "NOT_FOUND"),
        ("DELETE", "/api/loads"): (405, "METHOD_NOT_ALLOWED"),
        ("PUT", "/api/calls/1"): (405, "METHOD_NOT_ALLOWED"),
        ("GET", "/api/calls/0"): (422, "VALIDATION_ERROR"),
        ("GET", "/mcp"): (405, "METHOD_NOT_ALLOWED"),  # stateless: no stream to open
        ("DELETE", "/mcp"): (405, "METHOD_NOT_ALLOWED"),
        ("GET", "/api/negotiations?sesion_id=nope"): (422, "VALIDATION_ERROR"),
    }
    for (method, url), (status, code) in with_key.items():
        assert_error(await client.request(method, url), status, code)


async def test_public_paths_need_no_key(client: Client) -> None:
    for url in ("/health", "/schema/openapi.json", "/apix", "/nope"):
        (response,) = (await _without_key(client, "GET", url))[:1]
        assert response.status_code in (200, 404), (url, response.text)
        if response.status_code == 404:
            assert_error(response, 404, "NOT_FOUND")


async def test_mcp_also_takes_a_bearer_key(client: Client) -> None:
    del client.headers["X-API-Key"]
    try:
        bearer = await client.get("/mcp", headers={"Authorization": f"Bearer {API_KEY}"})
        assert_error(bearer, 405, "METHOD_NOT_ALLOWED")  # past the key check: MCP is POST only
        wrong = await client.get("/mcp", headers={"Authorization": "Bearer wrong"})
        assert_error(wrong, 401, "UNAUTHORIZED")
        api = await client.get("/api/loads", headers={"Authorization": f"Bearer {API_KEY}"})
        assert_error(api, 401, "UNAUTHORIZED")  # the API takes X-API-Key only
    finally:
        client.headers["X-API-Key"] = API_KEY
