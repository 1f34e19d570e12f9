"""The MCP tools as a user runs them: ``negotiation serve`` (``/mcp``) and ``negotiation mcp``
(stdio) as subprocesses, driven by the MCP SDK's own clients, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.clirun import cli_env, run_cli
from tests.conftest import API_KEY
from tests.mcp_client import ERAS, MODERN, TOOL_NAMES, mcp_session, stdio_session, whole_flow
from tests.server import running_server

pytestmark = pytest.mark.slow


async def test_serve_answers_both_eras_with_ids_in_the_access_log(
    database_url: str,
    tmp_path: Path,
    client: AsyncTestClient[Litestar],
    make_load: Callable[..., Awaitable[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")  # every log line in the file, however it stops
    log = tmp_path / "serve.log"
    settings = {"database_url": database_url, "api_keys": API_KEY, "log_level": "INFO"}
    with log.open("wb") as out, running_server(settings, log=out) as server:
        for era in (MODERN, "2025-06-18"):
            await make_load(f"LD_{era}")
            async with mcp_session(server.base_url, era) as mcp:
                rounds, ended = await whole_flow(mcp, f"LD_{era}", f"sess_{era}")
            listed = await client.get(f"/api/negotiations/session/sess_{era}")
            assert listed.json() == rounds
            booked = await client.get(f"/api/calls/{ended['id']}")
            assert booked.json()["outcome"] == "accepted"
            # Off the board before the next era searches the same lane and day.
            await _complete_load(database_url, f"LD_{era}")
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    offers = [
        line for line in lines if line.get("path") == "/mcp" and line.get("call_id") == ended["id"]
    ]
    assert offers and all(line["session_id"] == "sess_2025-06-18" for line in offers)
    assert all(line["request_id"] and line["status"] == 200 for line in offers)


async def _complete_load(database_url: str, load_id: str) -> None:
    from sqlalchemy import update

    from negotiation.queries import loads
    from negotiation.settings import Settings
    from tests.helpers import db_write

    def complete(conn: Any) -> None:
        conn.execute(update(loads).where(loads.c.load_id == load_id).values(status="completed"))

    await db_write(Settings(database_url=database_url), complete)


@pytest.mark.parametrize("era", ERAS)
async def test_stdio_serves_the_flow_on_the_configured_database(
    database_url: str,
    era: str,
    client: AsyncTestClient[Litestar],
    make_load: Callable[..., Awaitable[dict[str, Any]]],
) -> None:
    await make_load("LDSTDIO")
    async with stdio_session(database_url, era) as mcp:
        assert [t.name for t in (await mcp.list_tools()).tools] == TOOL_NAMES
        rounds, _ = await whole_flow(mcp, "LDSTDIO", "sess_stdio")
        unknown = await mcp.call_tool("start_call", {"load_id": "NOPE", "session_id": "sess_x"})
        assert unknown.is_error and unknown.structured_content["error"]["code"] == "LOAD_NOT_FOUND"
        assert unknown.structured_content["session_id"] == "sess_x"
    listed = await client.get("/api/negotiations/session/sess_stdio")
    assert listed.json() == rounds


def test_the_cli_prints_the_tools_an_agent_is_offered(sqlite_template: Path) -> None:
    env = cli_env(f"sqlite:///{sqlite_template}")
    listed = run_cli("mcp", "--list-tools", env=env)
    assert listed.code == 0, listed.stderr
    names = [line.split("(")[0] for line in listed.stdout.splitlines() if "(" in line[:25]]
    assert names == TOOL_NAMES
    assert "record_offer(call_id, carrier_offer, session_id?, notes?)" in listed.stdout
    as_json = run_cli("mcp", "--list-tools", "--json", env=env)
    tools = json.loads(as_json.stdout)
    assert [t["name"] for t in tools] == TOOL_NAMES
    assert all("inputSchema" in t and "outputSchema" in t for t in tools)
