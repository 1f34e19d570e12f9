"""What routes declare for themselves: session id parameters (one type, one refusal), the ids a
request is noted by (from the route Litestar matched), and their errors in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.helpers import Client, assert_error, concrete, count

#: Malformed ids, each as a path segment can carry it (a "/" would be another route).
BAD_IDS = ["a b", "x" * 129, "semi;colon", "héllo", "a\n", "tab\there"]


async def _session_parameters(client: Client) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, parameter) of every session id parameter in the live OpenAPI document."""
    document = (await client.get("/schema/openapi.json")).json()
    found = [
        (method.upper(), path, parameter)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "session_id"
    ]
    # getSession, deleteSession, listSessionRounds, getSessionReport; queryRounds, listCallRounds
    assert sorted({p["in"] for _, _, p in found}) == ["path", "query"], found
    assert len(found) >= 6, found
    return found


async def test_every_session_id_parameter_refuses_a_malformed_id_as_invalid_session_id(
    client: Client, database_url: str
) -> None:
    for method, path, parameter in await _session_parameters(client):
        schema = parameter["schema"]
        assert (schema["minLength"], schema["maxLength"]) == (1, 128), (path, schema)
        assert schema["pattern"].startswith("^[A-Za-z0-9_\\-.:]+$"), (path, schema)
        for bad in BAD_IDS + ([""] if parameter["in"] == "query" else []):
            if parameter["in"] == "path":
                url = concrete(path.replace("{session_id}", quote(bad, safe="")))
                response = await client.request(method, url)
            else:
                response = await client.request(method, concrete(path), params={"session_id": bad})
            body = assert_error(response, 422, "INVALID_SESSION_ID")
            message = body["error"]["message"]
            assert message.startswith(f"The session id '{bad[:40]}") and "1-128" in message
            assert body["error"]["details"] is None and body["session_id"] is None
            assert "x-session-id" not in response.headers, (method, path, bad)
    assert await count(database_url, "sessions") == 0


async def test_a_session_id_parameter_with_other_refused_parameters_names_those(
    client: Client,
) -> None:
    # As when handlers checked the id themselves: the other parameters are refused first.
    for url in (
        "/api/negotiations/session/a%20b?limit=0",
        "/api/negotiations?session_id=a%20b&limit=0",
    ):
        body = assert_error(await client.get(url), 422, "VALIDATION_ERROR")
        assert [d["key"] for d in body["error"]["details"]] == ["limit"], body


async def test_a_valid_session_id_parameter_reaches_the_handler(client: Client) -> None:
    assert (await client.post("/api/sessions", json={"session_id": "ok.id:1"})).status_code == 201
    assert (await client.get("/api/sessions/ok.id:1")).json()["session_id"] == "ok.id:1"
    assert (await client.get("/api/negotiations", params={"session_id": "ok.id:1"})).json()[
        "items"
    ] == []
    missing = await client.get("/api/reports/sessions/" + "y" * 128)
    assert assert_error(missing, 404, "SESSION_NOT_FOUND")["session_id"] == "y" * 128
