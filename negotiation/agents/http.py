"""``/mcp``: the tools over Streamable HTTP, on the service's own server, port and API keys.

The SDK's session manager runs stateless (no ``Mcp-Session-Id``): any copy of the service
answers any request, as for ``/api``. It serves the 2026-07-28 protocol (each request carries
its version) and the handshake-era ones (``initialize`` first, answered in the same request).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar, asgi
from litestar.enums import ScopeType
from litestar.types import Receive, Scope, Send
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from negotiation.agents.server import REQUEST_STATE, build_server
from negotiation.controllers.params import RequestContext
from negotiation.errors import ApiError, send_error

MCP_PATH = "/mcp"


def mcp_lifespan(
    context: Callable[[], RequestContext], max_body: int
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The app's lifespan part for ``/mcp``: the SDK's Streamable HTTP session manager, a new
    one at each start (one runs only once), for as long as the app runs. ``context()`` gives
    each tool call what an HTTP handler gets; bodies over ``max_body`` bytes are 413."""

    @asynccontextmanager
    async def run(app: Litestar) -> AsyncGenerator[None, None]:
        manager = StreamableHTTPSessionManager(
            build_server(context),
            json_response=True,
            stateless=True,
            max_request_body_size=max_body,
        )
        app.state.mcp = manager
        async with manager.run():
            yield

    return run


@asgi(MCP_PATH, include_in_schema=False, copy_scope=True)
async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """The MCP request itself; :class:`negotiation.auth.ApiKeyGate` has already refused one
    without a key (``X-API-Key`` or ``Authorization: Bearer``), before routing.

    Only POST: a stateless server sends nothing unasked, so it offers no stream to GET (which
    would otherwise stay open for good) and has no session to DELETE. The protocol's answer to
    both is 405.
    """
    method = scope["method"] if scope["type"] == ScopeType.HTTP else "WEBSOCKET"
    if method != "POST":
        message = f"{method} is not allowed on {MCP_PATH}; send MCP requests with POST."
        refusal = ApiError(405, "METHOD_NOT_ALLOWED", message, headers={"Allow": "POST"})
        await send_error(scope, send, refusal)
        return
    token = REQUEST_STATE.set(scope["state"])
    try:
        manager: StreamableHTTPSessionManager = scope["litestar_app"].state.mcp
        await manager.handle_request(scope, receive, send)  # type: ignore[arg-type]
    finally:
        REQUEST_STATE.reset(token)
