"""Request input the contract refuses before a handler sees it, in the contract's words.

Every JSON body is checked once, where it is parsed (:meth:`ApiRequest.json`):

* it must be sent as JSON (415 ``UNSUPPORTED_MEDIA_TYPE`` otherwise);
* malformed JSON is 400 ``INVALID_JSON``. The fast decoder (msgspec) also calls ``NaN``,
  ``Infinity`` and numbers beyond a double's range (``1e309``) malformed; clients send those
  when a number has gone wrong (Python's ``json.dumps(float("nan"))`` writes ``NaN``), so they
  are 422 ``VALIDATION_ERROR`` of the field that holds them;
* it may nest at most :data:`MAX_JSON_DEPTH` levels (422), so no walk over it can exhaust a stack;
* NUL characters are 422 ``VALIDATION_ERROR`` wherever they appear (path, query, JSON strings):
  PostgreSQL cannot store or even compare text holding them, and no id or note needs one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.exceptions import SerializationException

from negotiation.errors import ApiError, session_mismatch
from negotiation.messages import failure
from negotiation.middleware import SESSION_HEADER_STATE, usable_session_id

#: The deepest a JSON body may nest (a session's metadata may nest 8 levels inside it).
MAX_JSON_DEPTH = 32


def _first(value: Any, bad: Callable[[Any], bool]) -> str | None:
    """The dotted path of the first value or object key in ``value`` for which ``bad`` holds.

    Iterative, so a deeply nested value cannot exhaust the stack.
    """
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if bad(node):
            return path or "body"
        if isinstance(node, dict):
            items: list[tuple[Any, Any]] = list(node.items())
        elif isinstance(node, list):
            items = list(enumerate(node))
        else:
            continue
        for key, item in reversed(items):
            where = f"{path}.{key}" if path else str(key)
            if bad(key):
                return where
            stack.append((item, where))
    return None


def _too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _has_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def _invalid(where: str, problem: str, source: str = "body") -> ApiError:
    detail = failure(where, problem, source)
    return ApiError(422, "VALIDATION_ERROR", detail["message"], details=[detail])


def _is_json_media_type(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


_UNREADABLE = object()
_TOO_DEEP = object()


def _lenient(body: bytes) -> Any:
    """``body`` parsed by the stdlib, which reads NaN, Infinity and 1e309 as floats."""
    try:
        return json.loads(body)
    except RecursionError:
        return _TOO_DEEP
    except ValueError:  # includes bytes that are not UTF-8
        return _UNREADABLE


def _undecodable(lenient: Any) -> ApiError:
    if lenient is _TOO_DEEP or (lenient is not _UNREADABLE and _too_deep(lenient)):
        return _depth_error()
    where = None if lenient is _UNREADABLE else _first(lenient, _non_finite)
    if where is None:
        return ApiError(400, "INVALID_JSON", "The request body is not valid JSON.")
    return _invalid(where, "must be a finite number (not NaN or infinite)")


def _depth_error() -> ApiError:
    return ApiError(
        422, "VALIDATION_ERROR", f"The JSON body nests more than {MAX_JSON_DEPTH} levels deep."
    )


class ApiRequest(Request[Any, Any, Any]):
    """Litestar's request with the contract's answers to bodies it should not accept.

    A valid ``session_id`` in a JSON body is noted in the request state as soon as the body is
    read, so even a refused request answers with the session it named.
    """

    async def json(self) -> Any:
        body = await self.body()
        if body.strip() and not _is_json_media_type(self.headers.get("content-type")):
            raise ApiError(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                "Send the body as JSON with Content-Type: application/json.",
            )
        try:
            value = await super().json()
        except (SerializationException, RecursionError, UnicodeDecodeError) as exc:
            lenient = _lenient(body)
            self._note_session(lenient)
            raise _undecodable(lenient) from exc
        self._note_session(value)
        self._check_session_header(value)
        if _too_deep(value):
            raise _depth_error()
        if where := _first(value, _has_nul):
            raise _invalid(where, "must not contain NUL characters")
        return value

    def _note_session(self, value: Any) -> None:
        session_id = value.get("session_id") if isinstance(value, dict) else None
        if usable_session_id(session_id):
            self.scope["state"]["session_id"] = session_id

    def _check_session_header(self, value: Any) -> None:
        in_body = value.get("session_id") if isinstance(value, dict) else None
        header = self.scope["state"].get(SESSION_HEADER_STATE)
        if isinstance(in_body, str) and header is not None and in_body != header:
            raise session_mismatch(header, in_body, "the body's session_id")


async def refuse_nul_in_url(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: 422 when the path or a query parameter holds a NUL character."""
    scope = request.scope
    query: bytes = scope.get("query_string", b"")
    if "\x00" not in scope["path"] and b"%00" not in query and b"\x00" not in query:
        return  # the common case, decided without parsing the URL
    if "\x00" in request.url.path:
        raise ApiError(
            422, "VALIDATION_ERROR", "The URL path must not contain NUL characters (%00)."
        )
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            where = name.replace("\x00", "")
            raise _invalid(where, "must not contain NUL characters", "query")
