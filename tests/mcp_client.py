"""Driving the MCP tools with the MCP SDK's own client, in each protocol era.

``serving(app)`` runs the app under uvicorn on a free port in a thread (its own event loop,
as ``negotiation serve`` would); ``mcp_session`` connects the SDK's Streamable HTTP client to
it, ``stdio_session`` starts ``negotiation mcp`` and connects the SDK's stdio client.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, nullcontext
from typing import Any
from unittest import mock

import httpx2
from litestar import Litestar
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.clirun import CLI, cli_env
from tests.conftest import API_KEY

MODERN = "2026-07-28"
#: The current stateless protocol and the two handshake-era ones (``initialize`` first).
ERAS = (MODERN, "2025-11-25", "2025-06-18")
TOOL_NAMES = ["search_loads", "start_call", "record_offer", "get_session_history", "end_call"]


@contextmanager
def serving(app: Litestar) -> Iterator[str]:
    """The app served over real HTTP on 127.0.0.1 until the block ends; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _offering(era: str) -> AbstractContextManager[Any]:
    """The SDK's client offers the newest handshake version; older agents offer theirs."""
    if era == MODERN:
        return nullcontext()
    return mock.patch("mcp.client.session.LATEST_HANDSHAKE_VERSION", era)


@asynccontextmanager
async def mcp_session(
    base_url: str, era: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    """The SDK's Streamable HTTP client on ``/mcp``, speaking ``era`` (with the test key)."""
    sent = {"X-API-Key": API_KEY} if headers is None else headers
    async with httpx2.AsyncClient(headers=sent, timeout=60) as http:
        transport = streamable_http_client(f"{base_url}/mcp", http_client=http)
        with _offering(era):
            client = Client(transport, mode=MODERN if era == MODERN else "legacy")
            async with client:
                assert client.session.protocol_version == era
                yield client


@asynccontextmanager
async def stdio_session(database_url: str, era: str) -> AsyncIterator[Client]:
    """``negotiation mcp`` as a subprocess on ``database_url``, through the SDK's stdio client."""
    params = StdioServerParameters(command=CLI, args=["mcp"], env=cli_env(database_url))
    with _offering(era):
        client = Client(params, mode=MODERN if era == MODERN else "legacy")
        async with client:
            assert client.session.protocol_version == era
            yield client


async def tool(client: Client, name: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed: its structured result (it also has a text summary)."""
    result = await client.call_tool(name, arguments)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    assert not result.is_error, text
    assert text and "\n" not in text, result
    body: dict[str, Any] = result.structured_content
    return body


async def refusal(client: Client, name: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must be refused: the error (``code``, ``message``, ``details``)."""
    result = await client.call_tool(name, arguments)
    assert result.is_error, result
    error: dict[str, Any] = result.structured_content["error"]
    assert result.content[0].text == f"{error['code']}: {error['message']}"  # type: ignore[union-attr]
    assert result.structured_content["session_id"] == arguments.get(
        "session_id", result.structured_content["session_id"]
    )
    return error


async def whole_flow(
    client: Client, load_id: str, session_id: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """search -> start -> three offers (counter, counter, accept) -> history -> end, each
    result echoing ``session_id``; returns the rounds and the ended call."""
    found = await tool(
        client,
        "search_loads",
        origin="Chicago, IL",
        destination="Dallas, TX",
        equipment_type="Dry Van",
        pickup_date="2026-12-01",
        session_id=session_id,
    )
    assert [item["load_id"] for item in found["items"]] == [load_id]
    assert found["items"][0]["loadboard_rate"] == 2000.0
    assert found["session_id"] == session_id
    started = await tool(
        client, "start_call", load_id=load_id, carrier_mc_number="MC123456", session_id=session_id
    )
    assert started["session_id"] == session_id and started["outcome"] == "negotiating"
    rounds = [
        await tool(
            client,
            "record_offer",
            call_id=started["id"],
            carrier_offer=offer,
            session_id=session_id,
        )
        for offer in (2500, 2300, 2150)
    ]
    assert [r["decision"] for r in rounds] == ["counter", "counter", "accept"]
    assert [r["next_action"] for r in rounds] == ["await_offer", "await_offer", "transfer_to_rep"]
    assert [r["round_number"] for r in rounds] == [1, 2, 3]
    assert {r["session_id"] for r in rounds} == {session_id}
    history = await tool(client, "get_session_history", session_id=session_id)
    assert history == {"session_id": session_id, "rounds": rounds}
    ended = await tool(
        client,
        "end_call",
        call_id=started["id"],
        outcome="accepted",
        sentiment="positive",
        session_id=session_id,
    )
    assert ended["session_id"] == session_id and ended["outcome"] == "accepted"
    assert ended["call_end_time"] is not None
    return rounds, ended
