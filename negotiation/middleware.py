"""Request ids, session id propagation and one JSON access-log line per request (pure ASGI)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from negotiation.ids import validate_session_id

access_log = logging.getLogger("negotiation.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,128}")
_SESSION_IN_PATH = re.compile(
    r"^/(?:api/sessions|api/negotiations/session|api/reports/sessions|ui/sessions)/([^/]+)"
)
_CALL_IN_PATH = re.compile(r"^/api/calls/(\d{1,18})(?:/|$)")
#: How much of a request body is kept to find a ``session_id`` in it for an error response.
_KEPT_BODY_BYTES = 64 * 1024


def session_in_path(path: str) -> str | None:
    """The path segment that names a session on a session route (not validated)."""
    match = _SESSION_IN_PATH.match(path)
    return match.group(1) if match else None


def _usable(session_id: str | None) -> bool:
    # "." and ".." are path navigation, not the id of the session the request is about.
    return validate_session_id(session_id) and session_id not in (".", "..")


def _named_session(scope: Scope, headers: dict[bytes, bytes]) -> str | None:
    if (in_path := session_in_path(scope["path"])) is not None:
        return in_path
    query = scope.get("query_string", b"")
    if b"session_id=" in query:
        values = parse_qs(query.decode("latin-1")).get("session_id")
        if values:
            return values[0]
    header = headers.get(b"x-session-id")
    return header.decode("latin-1") if header else None


class RequestContextMiddleware:
    """Sets ``X-Request-ID`` and ``X-Session-ID`` on every response and logs each request.

    Handlers that learn a session id from the body put it in ``request.state.session_id``
    (and a call id in ``request.state.call_id``) before responding; failing that, a valid
    ``session_id`` in the JSON body is used (see :func:`session_from_body`).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        session_id = _named_session(scope, headers)
        state["session_id"] = session_id if _usable(session_id) else None
        if state["session_id"] is None:
            receive = _keeping_body(receive, state)
        if match := _CALL_IN_PATH.match(scope["path"]):
            state["call_id"] = int(match.group(1))
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = MutableScopeHeaders.from_message(message)
                response_headers["X-Request-ID"] = request_id
                if session_id := session_from_body(state):
                    response_headers["X-Session-ID"] = session_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            fields = {
                "method": scope.get("method"),
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "request_id": request_id,
            }
            if state.get("session_id"):
                fields["session_id"] = state["session_id"]
            if state.get("call_id") is not None:
                fields["call_id"] = state["call_id"]
            access_log.info("request", extra={"fields": fields})


def _keeping_body(receive: Receive, state: dict[str, Any]) -> Receive:
    """``receive`` that also keeps the body's first bytes for :func:`session_from_body`."""
    kept: list[bytes] = []
    state["_body_kept"] = kept

    async def keep() -> ReceiveMessage:
        message = await receive()
        if message["type"] == "http.request" and sum(map(len, kept)) < _KEPT_BODY_BYTES:
            kept.append(message.get("body", b""))
        return message

    return keep


def session_from_body(state: dict[str, Any]) -> str | None:
    """The request's session: the one already known, else a valid ``session_id`` in its JSON body.

    For responses produced before a handler could name the session (a body that failed
    validation, say), so that error envelopes, ``X-Session-ID`` and the log line still carry it.
    """
    if state.get("session_id") or not state.get("_body_kept"):
        return state.get("session_id")
    body = b"".join(state.pop("_body_kept"))
    if b'"session_id"' not in body:
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    candidate = parsed.get("session_id") if isinstance(parsed, dict) else None
    if isinstance(candidate, str) and _usable(candidate):
        state["session_id"] = candidate
    return state.get("session_id")
