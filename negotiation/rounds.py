"""Shaping lists of rounds into responses (shared by the call and session round listings)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from litestar import Litestar, Request, Response
from litestar.datastructures import Cookie
from litestar.enums import MediaType
from litestar.response.base import ASGIResponse
from litestar.serialization import encode_json
from litestar.types import Receive, Scope, Send, TypeEncodersMap

from negotiation.pagination import next_link
from negotiation.schemas import RoundRead, round_json


def rounds_response(
    request: Request[Any, Any, Any], rows: Sequence[Any], limit: int, max_rounds: int
) -> Response[list[RoundRead]]:
    """The first ``limit`` rows as a JSON array, with ``Link: rel="next"`` when more remain."""
    items = [round_json(r, max_rounds) for r in rows[:limit]]
    headers = {"Link": next_link(request.url, items[-1]["id"])} if len(rows) > limit else {}
    # The dicts encode exactly as list[RoundRead] would (tests/test_round_views.py).
    return RoundsResponse(cast("list[RoundRead]", items), headers=headers)


class RoundsResponse(Response[list[RoundRead]]):
    """A round listing, sent by :class:`_JsonSent` when nothing but headers is added to it.

    Litestar's general path (merging headers into a ``MutableScopeHeaders``, looking up a
    serializer, setting defaults, cookies, background tasks) was a sixth of a session read's
    CPU; a listing needs none of it. The bytes sent are the same (tests/test_round_views.py):
    its items (:func:`round_json`) hold only JSON-native values, so no type encoder applies.
    Anything more (cookies, a background task, a HEAD request) takes Litestar's path.
    """

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        background: Any = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: MediaType | str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        cookies = list(cookies or ())
        usual = not (background or self.background or cookies or self.cookies or encoded_headers)
        # A handler returning a Response passes media_type "" (Litestar then sends JSON).
        json = (self.media_type or media_type or MediaType.JSON) == MediaType.JSON
        if not usual or is_head_response or not json:
            return super().to_asgi_response(
                app,
                request,
                background=background,
                cookies=cookies,
                encoded_headers=encoded_headers,
                headers=headers,
                is_head_response=is_head_response,
                media_type=media_type,
                status_code=status_code,
                type_encoders=type_encoders,
            )
        body = encode_json(self.content)
        raw = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        for name, value in {**(headers or {}), **self.headers}.items():
            raw.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
        return _JsonSent(self.status_code or status_code or 200, raw, body)


class _JsonSent(ASGIResponse):
    """Sends a status, raw headers and a body (an ``ASGIResponse`` to Litestar's types)."""

    __slots__ = ("raw_headers",)

    def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        # Not ASGIResponse.__init__: its headers object and defaults are what is saved here.
        self.status_code = status
        self.raw_headers = raw_headers
        self.body = body
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": False})
