"""Request input the contract refuses before a handler sees it, in the contract's words.

* Malformed JSON is 400 ``INVALID_JSON``. The fast decoder (msgspec) also calls ``NaN``,
  ``Infinity`` and numbers beyond a double's range (``1e309``) malformed; clients send those
  when a number has gone wrong (Python's ``json.dumps(float("nan"))`` writes ``NaN``), so they
  are 422 ``VALIDATION_ERROR`` of the field that holds them.
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

from negotiation.errors import ApiError
from negotiation.middleware import usable_session_id


def _first(value: Any, bad: Callable[[Any], bool], path: str = "") -> str | None:
    """The dotted path of the first value (or object key) in ``value`` for which ``bad`` holds."""
    if bad(value):
        return path or "body"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if bad(key):
            return where
        if found := _first(item, bad, where):
            return found
    return None


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _has_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def _invalid(where: str, problem: str) -> ApiError:
    return ApiError(
        422,
        "VALIDATION_ERROR",
        f"Invalid value for '{where}': {problem}.",
        details=[{"key": where, "message": problem, "source": "body"}],
    )


_UNREADABLE = object()


def _lenient(body: bytes) -> Any:
    """``body`` parsed by the stdlib, which reads NaN, Infinity and 1e309 as floats."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _UNREADABLE


def _classify(lenient: Any) -> ApiError:
    where = None if lenient is _UNREADABLE else _first(lenient, _non_finite)
    if where is None:
        return ApiError(400, "INVALID_JSON", "The request body is not valid JSON.")
    return _invalid(where, "must be a finite number (not NaN or infinite)")


class ApiRequest(Request[Any, Any, Any]):
    """Litestar's request with the contract's answers to bodies it should not accept.

    A valid ``session_id`` in a JSON body is noted in the request state as soon as the body is
    read, so even a refused request answers with the session it named.
    """

    async def json(self) -> Any:
        try:
            value = await super().json()
        except SerializationException as exc:
            lenient = _lenient(await self.body())
            self._note_session(lenient)
            raise _classify(lenient) from exc
        self._note_session(value)
        if where := _first(value, _has_nul):
            raise _invalid(where, "text must not contain NUL characters")
        return value

    def _note_session(self, value: Any) -> None:
        session_id = value.get("session_id") if isinstance(value, dict) else None
        if usable_session_id(session_id):
            self.scope["state"]["session_id"] = session_id


def refuse_nul_in_url(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: 422 when the path or a query parameter holds a NUL character."""
    if "\x00" in request.url.path:
        raise ApiError(
            422, "VALIDATION_ERROR", "The URL path must not contain NUL characters (%00)."
        )
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise ApiError(
                422,
                "VALIDATION_ERROR",
                f"Invalid value for '{name.replace(chr(0), '')}': text must not contain NUL "
                "characters.",
                details=[{"key": name, "message": "contains NUL", "source": "query"}],
            )
