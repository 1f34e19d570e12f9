"""The MCP server (the SDK's low-level ``Server``): lists the tools and runs them.

A refusal is a tool error (``isError``) whose text starts with the HTTP API's ``code`` and whose
structured content is the API's error envelope; the error is never a protocol failure, so an
LLM reads it and can act on it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, cast

import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from negotiation import __version__
from negotiation.agents.tools import TOOLS
from negotiation.controllers.params import RequestContext
from negotiation.errors import ApiError, as_api_error
from negotiation.messages import body_failures
from negotiation.middleware import usable_session_id
from negotiation.service import check_session_id

logger = logging.getLogger("negotiation.agents")

#: The HTTP request's ``scope["state"]`` while a tool runs for it (None on stdio): the tool
#: reads the ``X-Session-ID`` header from it and names its session and call there, so the
#: response header and the access log carry them as on ``/api``.
REQUEST_STATE: ContextVar[dict[str, Any] | None] = ContextVar("mcp_request_state", default=None)

INSTRUCTIONS = (
    "Negotiate freight rates with truck carriers for a broker, who pays the carrier (a lower "
    "rate is better for the broker). Flow: search_loads -> start_call -> record_offer for each "
    "rate the carrier asks (follow next_action) -> end_call. get_session_history recalls a "
    "conversation. Pass one session_id through every call of a conversation."
)


#: Pydantic writes a constraint it could not attach to a type (money: a validator runs first)
#: under its own name; these are the JSON Schema keywords an agent's validator understands.
_KEYWORDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}


def _standard(schema: Any) -> Any:
    """``schema`` with pydantic's leftover constraint names as JSON Schema keywords."""
    if isinstance(schema, list):
        return [_standard(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _KEYWORDS and not isinstance(value, dict):
            out[_KEYWORDS[key]] = float(value) if isinstance(value, str) else value
        elif key == "decimal_places" and not isinstance(value, dict):
            # Not multipleOf 0.01: binary floats fail it (2300.1 / 0.01 is not whole); the
            # tool's description states the two decimals and the service checks them.
            continue
        else:
            out[key] = _standard(value)
    return out


@functools.cache
def tool_list() -> list[types.Tool]:
    """The tools as ``tools/list`` answers them (built once)."""
    return [
        types.Tool(
            name=spec.name,
            description=spec.description,
            input_schema=_standard(spec.args.model_json_schema()),
            output_schema=spec.result.model_json_schema(mode="serialization"),
            annotations=types.ToolAnnotations(
                read_only_hint=spec.read_only,
                destructive_hint=False,
                idempotent_hint=spec.read_only,
                open_world_hint=False,
            ),
        )
        for spec in TOOLS.values()
    ]


def _refusal(error: ApiError, session_id: str | None) -> types.CallToolResult:
    envelope = {
        "success": False,
        "error": {"code": error.code, "message": error.message, "details": error.details},
        "session_id": session_id,
    }
    return types.CallToolResult(
        content=[types.TextContent(text=f"{error.code}: {error.message}")],
        structured_content=envelope,
        is_error=True,
    )


def _note(state: dict[str, Any] | None, args: Any) -> None:
    """Name the tool's session and call in the HTTP request's state (header, access log)."""
    if state is None:
        return
    session_id = getattr(args, "session_id", None)
    if usable_session_id(session_id):
        state["session_id"] = session_id
    if (call_id := getattr(args, "call_id", None)) is not None:
        state["call_id"] = call_id


async def call_tool(
    ctx: RequestContext, name: str, arguments: dict[str, Any]
) -> types.CallToolResult:
    """Run tool ``name``: its result, or a tool error carrying the API's code and message."""
    spec = TOOLS.get(name)
    if spec is None:
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool {name!r}; the tools are {list(TOOLS)}.")
    state = REQUEST_STATE.get()
    header = state.get("session_id") if state else None
    echoed = arguments.get("session_id", header)
    session_id = echoed if isinstance(echoed, str) else None
    try:
        args = spec.args.model_validate(arguments)
        check_session_id(getattr(args, "session_id", None))
        _note(state, args)
        body, summary = await spec.run(ctx, args, header)
    except ValidationError as exc:
        # Worded as the HTTP API words the same fields of a request body.
        failures = body_failures(cast("list[dict[str, Any]]", exc.errors()), spec.args)
        message = failures[0]["message"] if failures else "The arguments are not valid."
        return _refusal(ApiError(422, "VALIDATION_ERROR", message, failures or None), session_id)
    except Exception as exc:
        error = as_api_error(exc)
        if error is None:
            logger.exception("tool %s failed", name)
            error = ApiError(500, "INTERNAL_ERROR", "The server could not complete the request.")
        return _refusal(error, session_id)
    return types.CallToolResult(content=[types.TextContent(text=summary)], structured_content=body)


def build_server(context: Callable[[], RequestContext]) -> Server[Any]:
    """The MCP server; ``context()`` gives each tool call its database, policy and time."""

    async def list_tools(
        _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list())

    async def run_tool(
        _ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return await call_tool(context(), params.name, dict(params.arguments or {}))

    return Server(
        "negotiation",
        version=__version__,
        title="Freight rate negotiation",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=run_tool,
    )
