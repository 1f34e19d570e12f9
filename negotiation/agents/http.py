"""``/mcp``: the tools over Streamable HTTP, on the service's own server, port and API keys.

The SDK's session manager runs stateless (no ``Mcp-Session-Id``): any copy of the service
answers any request, as for ``/api``. It serves the 2026-07-28 protocol (each request carries
its version) and the handshake-era ones (``initialize`` first, answered in the same request).

The SDK (and what it imports) is a third of a worker's memory, so a worker loads it at its
first MCP request, not at startup (:class:`McpOnDemand`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

from litestar import Litestar, asgi
from litestar.enums import ScopeType
from litestar.types import Receive, Scope, Send

from negotiation.controllers.params import RequestContext
from negotiation.errors import ApiError, send_error

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

MCP_PATH = "/mcp"


class McpOnDemand:
    """The SDK's Streamable HTTP session manager, imported, built and started by the first
    request that needs it, then run until :meth:`close` (at the app's shutdown).

    The manager runs in a task of its own: its task group must be left by the task that
    entered it, which a request's task, ending first, cannot be.
    """

    def __init__(self, context: Callable[[], RequestContext], max_body: int) -> None:
        self._context = context
        self._max_body = max_body
        self._stop = asyncio.Event()
        self._running: asyncio.Task[None] | None = None
        self._started: asyncio.Future[StreamableHTTPSessionManager] | None = None

    async def manager(self) -> StreamableHTTPSessionManager:
        """The running manager, started by the first call (later calls wait for the same)."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            self._running = asyncio.create_task(self._run(self._started), name="mcp-manager")
        return await asyncio.shield(self._started)

    async def _run(self, started: asyncio.Future[StreamableHTTPSessionManager]) -> None:
        try:
            from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

            from negotiation.agents.server import build_server

            manager = StreamableHTTPSessionManager(
                build_server(self._context),
                json_response=True,
                stateless=True,
                max_request_body_size=self._max_body,
            )
            async with manager.run():
                started.set_result(manager)
                await self._stop.wait()
        except BaseException as exc:
            if not started.done():  # the requests waiting for it fail with it
                if isinstance(exc, asyncio.CancelledError):
                    started.cancel()
                else:
                    started.set_exception(exc)
            raise

    async def close(self) -> None:
        """Stop the manager, if a request started it (one that failed to start told them)."""
        self._stop.set()
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)


def mcp_lifespan(
    context: Callable[[], RequestContext], max_body: int
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The app's lifespan part for ``/mcp``: a manager on demand (:class:`McpOnDemand`), a new
    one at each start (the SDK's runs only once), closed at shutdown. ``context()`` gives each
    tool call what an HTTP handler gets; bodies over ``max_body`` bytes are 413."""

    @asynccontextmanager
    async def run(app: Litestar) -> AsyncGenerator[None, None]:
        app.state.mcp = McpOnDemand(context, max_body)
        try:
            yield
        finally:
            await app.state.mcp.close()

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
    from negotiation.agents.server import REQUEST_STATE

    on_demand: McpOnDemand = scope["litestar_app"].state.mcp
    manager = await on_demand.manager()
    token = REQUEST_STATE.set(scope["state"])
    try:
        await manager.handle_request(scope, receive, send)  # type: ignore[arg-type]
    finally:
        REQUEST_STATE.reset(token)
