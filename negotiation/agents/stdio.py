"""``negotiation mcp``: the tools over stdio for a desktop agent, on the configured database."""

from __future__ import annotations

import json

from mcp.server.stdio import stdio_server

from negotiation.agents.server import build_server, tool_list
from negotiation.controllers.params import RequestContext
from negotiation.db import Database
from negotiation.recording import PolicySettings
from negotiation.service import utcnow


async def serve_stdio(db: Database) -> None:
    """Serve the tools on stdin/stdout until the client closes them (either protocol era)."""
    policy = PolicySettings.from_settings(db.settings)
    server = build_server(lambda: RequestContext(db, policy, utcnow()))
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def describe_tools(as_json: bool) -> str:
    """What an agent is offered: each tool with its description and arguments (or the JSON)."""
    tools = tool_list()
    if as_json:
        return json.dumps(
            [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools], indent=2
        )
    blocks = []
    for tool in tools:
        schema = tool.input_schema
        required = set(schema.get("required", ()))
        args = ", ".join(
            name + ("" if name in required else "?") for name in schema.get("properties", {})
        )
        blocks.append(f"{tool.name}({args})\n    {tool.description}")
    return "\n\n".join(blocks)
