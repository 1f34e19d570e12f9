"""What routes declare for themselves: session id parameters (one type, one refusal), the ids a
request is noted by (from the route Litestar matched), and their errors in the OpenAPI document.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import pytest
from litestar import Litestar, get
from litestar.params import FromPath

from negotiation.errors import ApiError
from negotiation.middleware import PathIds
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


# --- The ids a request is noted by: from the route Litestar matched, for any route -----------


@get("/api/trial/{session_id:str}/calls/{call_id:int}", include_in_schema=False)
async def _trial(session_id: FromPath[str], call_id: FromPath[int]) -> dict[str, str]:
    """A route the request context was never told about."""
    if call_id == 409:
        raise ApiError(409, "TRIAL_CONFLICT", "A refusal of the trial route.")
    return {"session_id": session_id}


@get("/api/sessions/trial-export", include_in_schema=False)
async def _static_under_sessions() -> dict[str, str]:
    """A fixed route where the session routes put an id: it names no session."""
    return {"export": "ok"}


async def test_a_new_route_gets_its_ids_noted_without_any_edit(
    app: Litestar, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    app.register(_trial)
    app.register(_static_under_sessions)
    with caplog.at_level(logging.INFO, logger="negotiation.access"):
        ok = await client.get("/api/trial/t-1/calls/7")
        refused = await client.get("/api/trial/t-2/calls/409", headers={"X-Session-ID": "t-2"})
        unkeyed = await client.get("/api/trial/t-3/calls/7", headers={"X-API-Key": "wrong"})
        unknown = await client.get("/api/trial/t-4/calls/7/nope")
        malformed = await client.get("/api/trial/a%20b/calls/7")
        export = await client.get("/api/sessions/trial-export")
        export_named = await client.get("/api/sessions/trial-export", headers={"X-Session-ID": "h"})
    assert ok.status_code == 200 and ok.headers["x-session-id"] == "t-1"
    assert assert_error(refused, 409, "TRIAL_CONFLICT")["session_id"] == "t-2"
    assert refused.headers["x-session-id"] == "t-2"
    # Answered before routing (401) or by it (404): still noted, from the app's route templates.
    assert assert_error(unkeyed, 401, "UNAUTHORIZED")["session_id"] == "t-3"
    assert assert_error(unknown, 404, "NOT_FOUND")["session_id"] == "t-4"
    assert unkeyed.headers["x-session-id"] == "t-3" and unknown.headers["x-session-id"] == "t-4"
    assert malformed.status_code == 200 and "x-session-id" not in malformed.headers
    # The matched route decides: a fixed segment where other routes have an id is no session.
    assert export.json() == {"export": "ok"} and "x-session-id" not in export.headers
    assert export_named.headers["x-session-id"] == "h"
    logged = [
        (f["status"], f.get("session_id"), f.get("call_id"))
        for f in (getattr(r, "fields", {}) for r in caplog.records)
        if f.get("path", "").startswith(("/api/trial", "/api/sessions/trial"))
    ]
    assert logged == [
        (200, "t-1", 7),
        (409, "t-2", 409),
        (401, "t-3", 7),
        (404, "t-4", 7),
        (200, None, 7),
        (200, None, None),
        (200, "h", None),
    ]


async def test_ids_come_from_the_parameters_litestar_parsed(client: Client) -> None:
    # The router's reading of the path, not its text: /api/calls/007 is call 7.
    response = await client.get("/api/calls/007")
    assert assert_error(response, 404, "CALL_NOT_FOUND")["error"]["message"] == "Call 7 not found"
    by_session = await client.get("/api/negotiations/session/s-9", params={"limit": 5})
    assert assert_error(by_session, 404, "SESSION_NOT_FOUND")["session_id"] == "s-9"
    assert by_session.headers["x-session-id"] == "s-9"


def test_path_ids_are_read_where_the_templates_put_them() -> None:
    paths = PathIds(["/a/{session_id:str}/b/{call_id:int}/c", "/x/{name:str}", "/a/{session_id}"])
    assert paths.named("/a/s.1/b/7/c/more") == {"session_id": "s.1", "call_id": "7"}
    assert paths.named("/a/s.1/other") == {"session_id": "s.1"}
    assert paths.named("/x/y") == paths.named("/a/") == paths.named("/ab/s") == {}


# --- Errors decided by the data, declared in each route's decorator ---------------------------

#: The operations whose decorator declares errors that no shape implies (a 409, a 410; a 404
#: for a load or call named in the body).
DATA_ERRORS = {
    "createLoad": {409},
    "releaseLoad": {409},
    "createCall": {404, 409},
    "recordRound": {409, 410},  # and 404, which its path's id implies too
    "updateCall": {409},
    "createSession": {409},
    "createProfile": {409},
}


async def test_the_document_lists_each_operations_data_errors_in_the_error_envelope(
    client: Client,
) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    found: dict[str, set[int]] = {}
    for path, item in document["paths"].items():
        for operation in item.values():
            responses = operation["responses"]
            # 409 and 410 follow from no shape, nor does a 404 on a path without an id.
            data = {"409", "410"} | ({"404"} if "{" not in path else set())
            if declared := {int(code) for code in responses if code in data}:
                found[operation["operationId"]] = declared
            for code in declared:
                schema = responses[str(code)]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, (path, code)
    assert found == DATA_ERRORS
