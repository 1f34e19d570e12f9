"""The MCP tools on ``/mcp``, driven by the MCP SDK's own client over real HTTP, in the current
stateless protocol and the handshake-era ones, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from litestar import Litestar
from mcp import MCPError
from sqlalchemy import Connection, select

from negotiation.app import create_app
from negotiation.queries import rounds
from negotiation.settings import Settings
from tests.conftest import API_KEY, LOAD, Clock
from tests.helpers import assert_error, db_read, with_settings
from tests.mcp_client import (
    ERAS,
    MODERN,
    TOOL_NAMES,
    mcp_session,
    refusal,
    serving,
    tool,
    whole_flow,
)


@pytest.fixture
def base_url(app: Litestar) -> Iterator[str]:
    with serving(app) as url:
        yield url


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP to the same server, with the key."""
    async with httpx.AsyncClient(
        base_url=base_url, headers={"X-API-Key": API_KEY}, timeout=60
    ) as client:
        yield client


async def post_load(http: httpx.AsyncClient, load_id: str, **fields: Any) -> None:
    response = await http.post("/api/loads", json={**LOAD, "load_id": load_id, **fields})
    assert response.status_code == 201, response.text


async def post_call(http: httpx.AsyncClient, load_id: str, **fields: Any) -> int:
    response = await http.post("/api/calls", json={"load_id": load_id, **fields})
    assert response.status_code == 201, response.text
    call_id: int = response.json()["id"]
    return call_id


@pytest.mark.parametrize("era", ERAS)
async def test_lists_the_five_tools_with_the_http_apis_limits(base_url: str, era: str) -> None:
    async with mcp_session(base_url, era) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert list(tools) == TOOL_NAMES
    for spec in tools.values():
        schema = spec.input_schema
        assert "session_id" in schema["properties"], spec.name
        assert schema["additionalProperties"] is False, spec.name
        assert spec.output_schema is not None and spec.description
        assert "session_id" in spec.description
    record = tools["record_offer"]
    assert set(record.input_schema["required"]) == {"call_id", "carrier_offer"}
    offer = json.dumps(record.input_schema["properties"]["carrier_offer"])
    assert '"exclusiveMinimum": 0' in offer and "10000000" in offer
    assert record.input_schema["properties"]["notes"]["anyOf"][0]["maxLength"] == 2000
    for words in ("next_action", "await_offer", "transfer_to_rep", "end_call", "decimal string"):
        assert words in (record.description or ""), words
    assert tools["get_session_history"].input_schema["required"] == ["session_id"]
    assert tools["search_loads"].annotations.read_only_hint is True  # type: ignore[union-attr]


@pytest.mark.parametrize("era", ERAS)
async def test_whole_flow_reads_back_over_http(
    base_url: str, http: httpx.AsyncClient, era: str
) -> None:
    await post_load(http, "LDFLOW")
    session_id = f"sess_flow_{era}"
    async with mcp_session(base_url, era) as client:
        rounds_over_mcp, ended = await whole_flow(client, "LDFLOW", session_id)
        # Without a session_id every result still says so.
        alone = await tool(client, "start_call", load_id="LDFLOW")
        assert alone["session_id"] is None
    listed = await http.get(f"/api/negotiations/session/{session_id}")
    assert listed.json() == rounds_over_mcp
    call = (await http.get(f"/api/calls/{ended['id']}")).json()
    assert call["negotiation_rounds"] == 3 and call["outcome"] == "accepted"
    assert call["final_rate_agreed"] == 2150.0 and call["sentiment"] == "positive"


async def test_an_mcp_round_and_an_http_round_are_the_same_rows(
    base_url: str, http: httpx.AsyncClient, settings: Settings
) -> None:
    await post_load(http, "LDTWIN")
    over_http, over_mcp = await post_call(http, "LDTWIN"), await post_call(http, "LDTWIN")
    async with mcp_session(base_url, MODERN) as client:
        for offer in (2500, 2300):
            response = await http.post(
                f"/api/calls/{over_http}/negotiate",
                json={"carrier_offer": offer, "session_id": "twin_http", "notes": "n"},
            )
            assert response.status_code == 201
            await tool(
                client,
                "record_offer",
                call_id=over_mcp,
                carrier_offer=offer,
                session_id="twin_mcp",
                notes="n",
            )

    def rows(conn: Connection, call_id: int) -> list[dict[str, Any]]:
        found = conn.execute(
            select(rounds).where(rounds.c.call_id == call_id).order_by(rounds.c.id)
        )
        ignored = {"id", "call_id", "session_id", "timestamp"}
        return [{k: v for k, v in r._mapping.items() if k not in ignored} for r in found]

    from_http = await db_read(settings, rows, over_http)
    assert len(from_http) == 2
    assert await db_read(settings, rows, over_mcp) == from_http


async def _same_refusal(
    client: Any, http: httpx.AsyncClient, name: str, arguments: dict[str, Any], request: Any
) -> str:
    """The tool refuses exactly as the HTTP request is refused: same code, same message."""
    response = await request
    assert response.status_code >= 400, response.text
    expected = response.json()["error"]
    error = await refusal(client, name, **arguments)
    assert (error["code"], error["message"]) == (expected["code"], expected["message"])
    code: str = error["code"]
    return code


@pytest.mark.parametrize("era", [MODERN, "2025-06-18"])
async def test_refusals_are_tool_errors_with_the_apis_code_and_message(
    base_url: str, http: httpx.AsyncClient, era: str
) -> None:
    await post_load(http, "LDREF")
    call_id = await post_call(http, "LDREF", external_id="ext-1")
    done = await post_call(http, "LDREF")
    for _ in range(3):  # a final reject closes that negotiation
        await http.post(f"/api/calls/{done}/negotiate", json={"carrier_offer": 2500})
    assert (await http.delete("/api/sessions/closed_one")).status_code == 404
    created = await http.post("/api/sessions", json={"session_id": "closed_one"})
    assert created.status_code == 201
    assert (await http.delete("/api/sessions/closed_one")).status_code == 200

    def offer(path_call: int, **body: Any) -> tuple[str, dict[str, Any], Any]:
        arguments = {"call_id": path_call, **body}
        return "record_offer", arguments, http.post(f"/api/calls/{path_call}/negotiate", json=body)

    codes = []
    async with mcp_session(base_url, era) as client:
        for name, arguments, request in [
            offer(999_999, carrier_offer=2100),
            offer(call_id, carrier_offer=-1),
            offer(call_id, carrier_offer=2100.123),
            offer(call_id, carrier_offer=True),
            offer(call_id),
            offer(call_id, carrier_offer=2100, notes="x" * 2001),
            offer(call_id, carrier_offer=2100, session_id="not a valid id!"),
            offer(call_id, carrier_offer=2100, session_id="closed_one"),
            offer(done, carrier_offer=2100),
            (
                "start_call",
                {"load_id": "NOPE"},
                http.post("/api/calls", json={"load_id": "NOPE"}),
            ),
            (
                "start_call",
                {"load_id": "LDREF", "external_id": "ext-1"},
                http.post("/api/calls", json={"load_id": "LDREF", "external_id": "ext-1"}),
            ),
            (
                "get_session_history",
                {"session_id": "never_seen"},
                http.get("/api/negotiations/session/never_seen"),
            ),
            (
                "end_call",
                {"call_id": 999_999, "outcome": "abandoned"},
                http.patch("/api/calls/999999", json={"outcome": "abandoned"}),
            ),
        ]:
            codes.append(await _same_refusal(client, http, name, arguments, request))
        unknown = await refusal(client, "record_offer", call_id=call_id, carrier_offer=1, bogus=1)
        assert unknown["code"] == "VALIDATION_ERROR" and "bogus" in unknown["message"]
        with pytest.raises(MCPError, match="Unknown tool"):  # a protocol error, not a refusal
            await client.call_tool("book_load", {"call_id": call_id})
        bad_outcome = await refusal(client, "end_call", call_id=call_id, outcome="negotiating")
        assert bad_outcome["code"] == "VALIDATION_ERROR" and "outcome" in bad_outcome["message"]
        echoed = await refusal(
            client, "record_offer", call_id=999_999, carrier_offer=1, session_id="s_e"
        )
        assert echoed["code"] == "CALL_NOT_FOUND"
        # An accept books the load: that call is closed, the load's other calls are refused.
        booking = await post_call(http, "LDREF")
        await tool(client, "record_offer", call_id=booking, carrier_offer=1900)
        for path_call in (booking, call_id):  # another session on the booking call
            case = offer(path_call, carrier_offer=1900, session_id="after_booking")
            codes.append(await _same_refusal(client, http, *case))
    assert codes[:8] == [
        "CALL_NOT_FOUND",
        *["VALIDATION_ERROR"] * 5,
        "INVALID_SESSION_ID",
        "SESSION_CLOSED",
    ]
    assert codes[8] in ("NEGOTIATION_CLOSED", "CALL_CLOSED")
    assert codes[9:13] == ["LOAD_NOT_FOUND", "CALL_EXISTS", "SESSION_NOT_FOUND", "CALL_NOT_FOUND"]
    assert codes[13:] == ["CALL_CLOSED", "LOAD_BOOKED"]


async def test_expired_and_unknown_sessions_are_refused_as_over_http(settings: Settings) -> None:
    clock = Clock(dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC))
    app = create_app(with_settings(settings, require_sessions=True), clock=clock)
    with serving(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": API_KEY}) as http:
            await post_load(http, "LDEXP")
            call_id = await post_call(http, "LDEXP")
            made = await http.post("/api/sessions", json={"session_id": "short", "ttl_seconds": 60})
            assert made.status_code == 201
            clock.advance(120)
            async with mcp_session(base_url, MODERN) as client:
                codes = [
                    await _same_refusal(
                        client,
                        http,
                        "record_offer",
                        {"call_id": call_id, "carrier_offer": 2100, "session_id": session_id},
                        http.post(
                            f"/api/calls/{call_id}/negotiate",
                            json={"carrier_offer": 2100, "session_id": session_id},
                        ),
                    )
                    for session_id in ("short", "never_created")
                ]
    assert codes == ["SESSION_EXPIRED", "SESSION_NOT_FOUND"]


async def test_string_offers_are_taken_as_the_http_api_takes_them(
    base_url: str, http: httpx.AsyncClient
) -> None:
    await post_load(http, "LDSTR")
    over_http, over_mcp = await post_call(http, "LDSTR"), await post_call(http, "LDSTR")
    response = await http.post(
        f"/api/calls/{over_http}/negotiate", json={"carrier_offer": "2300.50"}
    )
    async with mcp_session(base_url, MODERN) as client:
        result = await client.call_tool(
            "record_offer", {"call_id": over_mcp, "carrier_offer": "2300.50"}
        )
    body = result.structured_content
    if response.status_code == 201:
        assert not result.is_error and body["carrier_offer"] == 2300.5
        assert body["counter_offer"] == response.json()["counter_offer"]
    else:
        assert result.is_error and body["error"]["message"] == response.json()["error"]["message"]


async def test_concurrent_offers_on_one_negotiation_record_at_most_max_rounds(
    base_url: str, http: httpx.AsyncClient, settings: Settings
) -> None:
    await post_load(http, "LDRACE")
    call_id = await post_call(http, "LDRACE")
    arguments = {"call_id": call_id, "carrier_offer": 5000, "session_id": "race"}
    async with (
        mcp_session(base_url, MODERN) as a,
        mcp_session(base_url, MODERN) as b,
        mcp_session(base_url, "2025-11-25") as c,
        mcp_session(base_url, "2025-06-18") as d,
    ):
        results = await asyncio.gather(
            *(client.call_tool("record_offer", arguments) for client in (a, b, c, d) * 3)
        )
    recorded = [r.structured_content for r in results if not r.is_error]
    refused = {r.structured_content["error"]["code"] for r in results if r.is_error}
    assert sorted(r["round_number"] for r in recorded) == list(range(1, settings.max_rounds + 1))
    assert refused <= {"NEGOTIATION_CLOSED", "CALL_CLOSED"} and refused
    listed = (await http.get(f"/api/calls/{call_id}/negotiations")).json()
    assert [r["round_number"] for r in listed] == list(range(1, settings.max_rounds + 1))


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def test_mcp_takes_the_api_keys_in_either_header(settings: Settings) -> None:
    rotated = with_settings(settings, api_keys=("old-key", "new-key"))
    with serving(create_app(rotated)) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as raw:
            for headers in (
                {},
                {"X-API-Key": "wrong"},
                {"Authorization": "Bearer wrong"},
                {"Authorization": "Basic old-key"},
            ):
                response = await raw.post("/mcp", json=INITIALIZE, headers={**ACCEPT, **headers})
                assert_error(response, 401, "UNAUTHORIZED")
            assert_error(await raw.get("/mcp"), 401, "UNAUTHORIZED")
            for headers in ({"X-API-Key": "old-key"}, {"Authorization": "Bearer new-key"}):
                response = await raw.post("/mcp", json=INITIALIZE, headers={**ACCEPT, **headers})
                assert response.status_code == 200, response.text
                assert response.json()["result"]["protocolVersion"] == "2025-06-18"
        for era in (MODERN, "2025-11-25"):
            async with mcp_session(base_url, era, {"Authorization": "Bearer new-key"}) as client:
                assert [t.name for t in (await client.list_tools()).tools] == TOOL_NAMES
            for wrong in ({"X-API-Key": "wrong"}, {}):
                # The SDK's client reports the 401 as an error response on its first request.
                with pytest.raises(BaseExceptionGroup) as refused:
                    async with mcp_session(base_url, era, wrong) as client:
                        await client.list_tools()
                assert refused.group_contains(MCPError)


#: A worker serving /api, then /mcp: whether the MCP SDK was loaded before and after.
_ON_DEMAND = """
import json, sys
from litestar.testing import TestClient
from negotiation.app import create_app
from negotiation.settings import Settings

app = create_app(Settings(database_url=sys.argv[1], api_keys=(sys.argv[2],)))
with TestClient(app) as client:
    client.headers["X-API-Key"] = sys.argv[2]
    assert client.get("/api/loads").status_code == 200
    before = "mcp" in sys.modules
    answer = client.post("/mcp", json=json.loads(sys.argv[3]), headers=json.loads(sys.argv[4]))
    print(json.dumps([before, answer.status_code, "mcp" in sys.modules]))
"""


def test_a_worker_loads_the_mcp_sdk_at_its_first_mcp_request(settings: Settings) -> None:
    """The SDK is a third of a worker's memory: a worker that serves only /api never loads it."""
    args = [settings.database_url, API_KEY, json.dumps(INITIALIZE), json.dumps(ACCEPT)]
    done = subprocess.run(
        [sys.executable, "-c", _ON_DEMAND, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [False, 200, True]  # after the log lines


async def test_first_mcp_requests_at_once_share_one_manager(settings: Settings) -> None:
    with serving(create_app(settings)) as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": API_KEY}) as raw:
            answers = await asyncio.gather(
                *(raw.post("/mcp", json=INITIALIZE, headers=ACCEPT) for _ in range(5))
            )
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]


async def test_an_mcp_manager_that_fails_to_start_fails_its_requests_not_the_app(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_context: Any) -> Any:
        raise RuntimeError("no server today")

    monkeypatch.setattr("negotiation.agents.server.build_server", broken)
    with serving(create_app(settings)) as base_url:  # and it stops cleanly at the end
        async with httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": API_KEY}) as raw:
            for _ in range(2):
                failed = await raw.post("/mcp", json=INITIALIZE, headers=ACCEPT)
                assert_error(failed, 500, "INTERNAL_ERROR")
                assert "no server today" not in failed.text
            assert (await raw.get("/api/loads")).status_code == 200


async def test_request_and_session_ids_as_on_the_api(
    base_url: str, http: httpx.AsyncClient
) -> None:
    await post_load(http, "LDHDR")
    call_id = await post_call(http, "LDHDR")

    def call(arguments: dict[str, Any]) -> dict[str, Any]:
        params = {"name": "record_offer", "arguments": arguments}
        return {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}

    era = {**ACCEPT, "MCP-Protocol-Version": "2025-11-25"}
    response = await http.post(
        "/mcp",
        json=call({"call_id": call_id, "carrier_offer": 2500, "session_id": "from_args"}),
        headers={**era, "X-Request-ID": "req-mcp-1"},
    )
    assert response.headers["x-request-id"] == "req-mcp-1"
    assert response.headers["x-session-id"] == "from_args"
    # No session_id argument: the X-Session-ID header names the session, as on /api.
    response = await http.post(
        "/mcp",
        json=call({"call_id": call_id, "carrier_offer": 2500}),
        headers={**era, "X-Session-ID": "from_header"},
    )
    result = response.json()["result"]
    assert result["structuredContent"]["session_id"] == "from_header"
    assert response.headers["x-session-id"] == "from_header"
    # The same body limit as /api.
    big = call({"call_id": call_id, "carrier_offer": 2500, "notes": "x" * 70_000})
    assert (await http.post("/mcp", json=big, headers=era)).status_code == 413
