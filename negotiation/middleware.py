"""Request ids, session id propagation and one JSON access-log line per request (pure ASGI).

The session and the call a request names are in its path (as the route Litestar matched parsed
them), else in its query, else (the session) in its ``X-Session-ID`` header. No list of routes
is kept here: a request that no route takes (refused before routing or by it) is read with the
app's own route templates (:class:`PathIds`), and a matched route's parameters replace that
reading (:func:`route_ids`).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from negotiation.hardening import security_headers, with_headers
from negotiation.ids import validate_session_id
from negotiation.metrics import observe_request

access_log = logging.getLogger("negotiation.access")
#: Where ``Logger.info`` places a record when it does not look up its caller (as served).
_UNKNOWN_FILE, _UNKNOWN_FUNCTION = "(unknown file)", "(unknown function)"

_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,128}")
_CALL_ID = re.compile(r"\d{1,18}")
#: Request state key of the raw ``X-Session-ID`` header (None when absent), for its checks.
SESSION_HEADER_STATE = "session_header"
#: Request state key of the ids the path names where a route template of the app puts them
#: (:meth:`PathIds.named`, not validated), read before routing.
PATH_IDS_STATE = "path_ids"
#: The path parameters a request is noted by: the session and the call it is about.
NOTED = ("session_id", "call_id")


def _new_request_id() -> str:
    """32 random hex digits. A request id names a request in logs and is no secret, so it
    comes from ``random`` rather than ``uuid4()``'s ``os.urandom``: a system call per request,
    4 % of a session read's CPU."""
    return f"{random.getrandbits(128):032x}"


def _query_value(scope: Scope, name: str) -> str | None:
    query = scope.get("query_string", b"")
    if f"{name}=".encode() not in query:
        return None
    values = parse_qs(query.decode("latin-1")).get(name)
    return values[0] if values else None


def _noted_name(segment: str) -> str | None:
    """``session_id`` for the template segment ``{session_id:str}``; None for any other."""
    name = segment[1:].split(":")[0].rstrip("}") if segment.startswith("{") else None
    return name if name in NOTED else None


def _segment_pattern(segment: str) -> str:
    """A template segment as a regex: a noted id is captured, a fixed segment must match."""
    if (name := _noted_name(segment)) is not None:
        return f"(?P<{name}>[^/]+)"
    return "[^/]+" if segment.startswith("{") else re.escape(segment)


class PathIds:
    """Where the app's route templates put a session or a call id, read from its routes once.

    For requests no route takes: a ``/api/sessions/x/nope`` (404) or a request without a key
    (401, answered before routing) is still noted with session ``x``.
    """

    def __init__(self, templates: Iterable[str]) -> None:
        shapes = set()
        for template in templates:
            segments = template.split("/")
            named = [i for i, s in enumerate(segments) if _noted_name(s) is not None]
            if named:  # up to its last id: the path may go on (/api/calls/7/negotiate)
                shapes.add("/".join(_segment_pattern(s) for s in segments[: named[-1] + 1]))
        self._patterns = [re.compile(shape) for shape in sorted(shapes, key=len, reverse=True)]

    def named(self, path: str) -> dict[str, str]:
        """The ids ``path`` names where a template puts them (not validated), e.g.
        ``{"session_id": "x"}`` for ``/api/sessions/x``."""
        for pattern in self._patterns:
            if match := pattern.match(path):
                return match.groupdict()
        return {}


def usable_session_id(session_id: str | None) -> bool:
    """A valid id that is not "." or ".." (path navigation, not a session's id)."""
    return validate_session_id(session_id) and session_id not in (".", "..")


def _call_id(value: object) -> int | None:
    if isinstance(value, int):
        return value if 0 <= value < 10**18 else None
    return int(value) if isinstance(value, str) and _CALL_ID.fullmatch(value) else None


def note_ids(scope: Scope, in_path: Mapping[str, Any]) -> None:
    """Note in the request state the session and the call the request names: ``in_path``,
    else in its query, else (the session) in its ``X-Session-ID`` header. A session id that
    is not usable is noted as None, so it is never echoed."""
    state = scope["state"]
    session_id = in_path.get("session_id")
    if session_id is None:
        session_id = _query_value(scope, "session_id")
    if session_id is None:
        session_id = state.get(SESSION_HEADER_STATE)
    state["session_id"] = session_id if usable_session_id(session_id) else None
    call = in_path.get("call_id")
    if (call_id := _call_id(call if call is not None else _query_value(scope, "call_id"))) is None:
        state.pop("call_id", None)
    else:
        state["call_id"] = call_id


def route_ids(app: ASGIApp) -> ASGIApp:
    """Litestar middleware of the app (it runs once a route matched): the request's ids from the
    route's own path parameters, as Litestar parsed them."""

    async def noted(scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        # Without ids in the path either way, the note made before routing stands.
        if scope["type"] == ScopeType.HTTP and (params or scope["state"].get(PATH_IDS_STATE)):
            note_ids(scope, params)
        await app(scope, receive, send)

    return noted


class RequestContextMiddleware:
    """Sets ``X-Request-ID``, ``X-Session-ID`` and the security headers
    (:func:`negotiation.hardening.security_headers`) on every response, logs and counts each
    request. One layer for all of them: each pure ASGI layer wraps ``send`` once more per request.

    A session id in a JSON body is noted in ``request.state.session_id`` when the body is parsed
    (:class:`negotiation.body.ApiRequest`), so even a refused request answers with it.
    """

    def __init__(self, app: ASGIApp, paths: PathIds) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else _new_request_id()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        raw_header = headers.get(b"x-session-id")
        state[SESSION_HEADER_STATE] = None if raw_header is None else raw_header.decode("latin-1")
        state[PATH_IDS_STATE] = in_path = self.paths.named(scope["path"])
        note_ids(scope, in_path)
        fixed, defaults = security_headers(scope["path"])
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                ids = [*fixed, (b"x-request-id", request_id.encode("latin-1"))]
                if state.get("session_id"):
                    ids.append((b"x-session-id", state["session_id"].encode("latin-1")))
                with_headers(message, ids, defaults)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            seconds = time.perf_counter() - started
            # Litestar notes the matched route's template in the scope; none for a 404.
            route = scope.get("path_template")
            code = state.get("error_code") if status >= 400 else None
            observe_request(scope["method"], route, status, seconds, code)
            if access_log.isEnabledFor(logging.INFO):
                _log_access(scope, state, status, seconds, request_id)


def _log_access(
    scope: Scope, state: dict[str, Any], status: int, seconds: float, request_id: str
) -> None:
    """The request's access line: a record handed to the access logger's handlers as
    ``Logger.info`` would, less its dispatch (a line is written per request)."""
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
    record = logging.LogRecord(
        access_log.name, logging.INFO, _UNKNOWN_FILE, 0, "request", None, None, _UNKNOWN_FUNCTION
    )
    record.__dict__["fields"] = fields  # as ``extra={"fields": ...}`` sets it
    access_log.handle(record)
