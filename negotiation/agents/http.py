"""``/mcp``: the tools over Streamable HTTP, on the service's own server, port and API keys.

The SDK's session manager runs stateless (no ``Mcp-Session-Id``): any copy of the service
answers any request, as for ``/api``. It serves the 2026-07-28 protocol (each request carries
its version) and the handshake-era ones (``initialize`` first, answered in the same request).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar, asgi
from litestar.types import Receive, Scope, Send
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from negotiation.agents.server import REQUEST_STATE, build_server
from negotiation.auth import key_fingerprint, matching_key
from negotiation.controllers.params import RequestContext
from negotiation.errors import ApiError
from negotiation.settings import Settings

MCP_PATH = "/mcp"
_API_KEY = b"x-api-key"
_AUTHORIZATION = b"authorization"


def presented_key(scope: Scope) -> bytes | None:
    """The key in ``X-API-Key``, else in ``Authorization: Bearer <key>``."""
    headers = dict(scope["headers"])
    if key := headers.get(_API_KEY):
        return key
    scheme, _, token = headers.get(_AUTHORIZATION, b"").partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else None


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
    """401 ``UNAUTHORIZED`` without a configured key; else the MCP request itself."""
    app = scope["litestar_app"]
    settings: Settings = app.state.settings
    key = matching_key(presented_key(scope), settings)
    if key is None:
        raise ApiError(
            401,
            "UNAUTHORIZED",
            "A valid X-API-Key header (or Authorization: Bearer <key>) is required.",
        )
    scope["state"]["api_key_fingerprint"] = key_fingerprint(key)
    token = REQUEST_STATE.set(scope["state"])
    try:
        manager: StreamableHTTPSessionManager = app.state.mcp
        await manager.handle_request(scope, receive, send)  # type: ignore[arg-type]
    finally:
        REQUEST_STATE.reset(token)
