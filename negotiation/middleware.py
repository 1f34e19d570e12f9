"""Request ids, session id propagation and one JSON access-log line per request (pure ASGI)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from negotiation.hardening import with_headers
from negotiation.ids import validate_session_id
from negotiation.metrics import observe_request

access_log = logging.getLogger("negotiation.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,128}")
_SESSION_IN_PATH = re.compile(
    r"^/(?:api/sessions|api/negotiations/session|api/reports/sessions|ui/sessions)/([^/]+)"
)
_CALL_IN_PATH = re.compile(r"^/api/calls/([^/]+)(?:/|$)")
_CALL_ID = re.compile(r"\d{1,18}")
#: Request state key of the raw ``X-Session-ID`` header (None when absent), for its checks.
SESSION_HEADER_STATE = "session_header"


def _query_value(scope: Scope, name: str) -> str | None:
    query = scope.get("query_string", b"")
    if f"{name}=".encode() not in query:
        return None
    values = parse_qs(query.decode("latin-1")).get(name)
    return values[0] if values else None


def session_in_path(path: str) -> str | None:
    """The path segment that names a session on a session route (not validated)."""
    match = _SESSION_IN_PATH.match(path)
    return match.group(1) if match else None


def usable_session_id(session_id: str | None) -> bool:
    """A valid id that is not "." or ".." (path navigation, not a session's id)."""
    return validate_session_id(session_id) and session_id not in (".", "..")


def _named_session(scope: Scope, headers: dict[bytes, bytes]) -> str | None:
    if (in_path := session_in_path(scope["path"])) is not None:
        return in_path
    if (value := _query_value(scope, "session_id")) is not None:
        return value
    header = headers.get(b"x-session-id")
    return header.decode("latin-1") if header else None


def _named_call(scope: Scope) -> int | None:
    match = _CALL_IN_PATH.match(scope["path"])
    value = match.group(1) if match else _query_value(scope, "call_id")
    return int(value) if value is not None and _CALL_ID.fullmatch(value) else None


class RequestContextMiddleware:
    """Sets ``X-Request-ID`` and ``X-Session-ID`` on every response, logs and counts each request.

    A session id in a JSON body is noted in ``request.state.session_id`` when the body is parsed
    (:class:`negotiation.body.ApiRequest`), so even a refused request answers with it.
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
        raw_header = headers.get(b"x-session-id")
        state[SESSION_HEADER_STATE] = None if raw_header is None else raw_header.decode("latin-1")
        session_id = _named_session(scope, headers)
        state["session_id"] = session_id if usable_session_id(session_id) else None
        if (call_id := _named_call(scope)) is not None:
            state["call_id"] = call_id
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                ids = [(b"x-request-id", request_id.encode("latin-1"))]
                if state.get("session_id"):
                    ids.append((b"x-session-id", state["session_id"].encode("latin-1")))
                with_headers(message, ids)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            seconds = time.perf_counter() - started
            # Litestar notes the matched route's template in the scope; none for a 404.
            route = scope.get("path_template")
            code = state.get("error_code") if status >= 400 else None
            observe_request(scope["method"], route, status, seconds, code)
            fields = {
                "method": scope.get("method"),
                "path": scope["path"],
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "request_id": request_id,
            }
            if state.get("session_id"):
                fields["session_id"] = state["session_id"]
            if state.get("call_id") is not None:
                fields["call_id"] = state["call_id"]
            access_log.info("request", extra={"fields": fields})
