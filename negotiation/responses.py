"""A JSON response that skips Litestar's general response path when it needs none of it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from litestar import Litestar, Request, Response
from litestar.datastructures import Cookie
from litestar.enums import MediaType
from litestar.response.base import ASGIResponse
from litestar.serialization import encode_json
from litestar.types import (
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
    TypeEncodersMap,
)

T = TypeVar("T")


class JsonResponse(Response[T]):
    """A JSON response sent by :class:`_JsonSent` when nothing but headers is added to it.

    Litestar's general path (merging headers into a ``MutableScopeHeaders``, looking up a
    serializer, setting defaults, cookies, background tasks) was a sixth of a session read's
    CPU; a round listing or a stored outcome needs none of it. The content is JSON bytes, sent
    as they are (as Litestar sends bytes), or a list or dict of JSON-native values (no type
    encoder applies to them). The bytes sent are Litestar's (tests/test_responses.py).
    Anything else (other content, cookies, a background task, a HEAD request, another media
    type, a status sent without a body) takes Litestar's path.
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
        status = self.status_code or status_code or 200
        bodiless = status < 200 or status in (204, 304)  # Litestar sends these without a body
        content = self.content
        plain = isinstance(content, (bytes, list, dict))  # a str, say, is sent unquoted
        if not usual or is_head_response or not json or bodiless or not plain:
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
        body = content if isinstance(content, bytes) else encode_json(content)
        return _JsonSent(status, json_headers(body, {**(headers or {}), **self.headers}), body)


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
        await send_json(send, self.status_code, self.raw_headers, self.body)


def json_headers(body: bytes, headers: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    """The raw headers of a JSON ``body``: its type and length, then ``headers`` (names in
    lower case, as Litestar sends them)."""
    raw = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    raw += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
    return raw


async def send_json(
    send: Send, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    """A whole response on the ASGI channel: its start, then its body in one message."""
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": raw_headers,
    }
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)
