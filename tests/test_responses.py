"""JsonResponse sends what Litestar's Response sends, and the routes built on it take its
short path (a change in what Litestar passes once sent them all the long way unnoticed)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar import Litestar, Response
from litestar.handlers import HTTPRouteHandler

from negotiation.responses import JsonResponse, _JsonSent


def _sent(response: Response[Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """What the response sends, as Litestar's HTTP route would run it."""
    asgi = response.to_asgi_response(None, request=cast(Any, None), headers={}, cookies=[])
    messages: list[Any] = []

    async def send(message: Any) -> None:
        messages.append(message)

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    asyncio.run(asgi({"type": "http"}, receive, send))  # type: ignore[arg-type]
    start, body = messages
    assert body["type"] == "http.response.body" and not body.get("more_body")
    return start["status"], sorted(start["headers"]), body["body"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(
    content=json_values | json_values.map(lambda v: Response(v).render(v, "application/json")),
    status=st.none() | st.integers(200, 599).filter(lambda s: s not in (204, 304)),
    replayed=st.booleans(),
)
def test_any_json_or_json_bytes_is_sent_as_litestar_sends_it(
    content: Any, status: int | None, replayed: bool
) -> None:
    headers = {"Idempotency-Replayed": "true"} if replayed else {}
    ours = JsonResponse(content, status_code=status, headers=headers)
    assert _sent(ours) == _sent(Response(content, status_code=status, headers=headers))


@pytest.mark.parametrize("status", [101, 204, 304])
def test_a_status_without_a_body_is_litestars_to_send(status: int) -> None:
    assert _sent(JsonResponse(b"", status_code=status)) == _sent(Response(b"", status_code=status))


#: The routes whose responses are JsonResponses: the round listings and the stored outcomes.
SHORT_PATH_ROUTES = ["listSessionRounds", "listCallRounds", "recordRound", "createSession"]


@pytest.mark.parametrize("operation_id", SHORT_PATH_ROUTES)
def test_the_routes_take_the_short_path(app: Litestar, operation_id: str) -> None:
    """Litestar passes a route's own media type ("" for a Response): JSON, not the long way."""
    handlers = [
        handler
        for route in app.routes
        for handler in getattr(route, "route_handlers", ())
        if isinstance(handler, HTTPRouteHandler) and handler.operation_id == operation_id
    ]
    assert len(handlers) == 1
    response = JsonResponse(b"[]", status_code=201)
    kwargs: dict[str, Any] = {"headers": {}, "cookies": [], "media_type": handlers[0].media_type}
    assert isinstance(response.to_asgi_response(None, cast(Any, None), **kwargs), _JsonSent)
    kwargs["media_type"] = "text/csv"
    assert not isinstance(response.to_asgi_response(None, cast(Any, None), **kwargs), _JsonSent)
