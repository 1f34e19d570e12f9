"""JSON request bodies: malformed JSON is 400 ``INVALID_JSON``; non-finite numbers are 422.

The fast decoder (msgspec) refuses ``NaN``, ``Infinity`` and numbers beyond a double's range
(``1e309``) as malformed. Clients send those when they mean a number that has gone wrong (Python's
``json.dumps(float("nan"))`` writes ``NaN``), so the contract calls them validation errors of the
field that holds them, not unreadable bodies.
"""

from __future__ import annotations

import json
import math
from typing import Any

from litestar import Request
from litestar.exceptions import SerializationException

from negotiation.errors import ApiError
from negotiation.ids import validate_session_id


def _first_non_finite(value: Any, path: str = "") -> str | None:
    """The dotted path of the first NaN or infinite number in ``value``, if any."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "body"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if found := _first_non_finite(item, f"{path}.{key}" if path else str(key)):
            return found
    return None


_UNREADABLE = object()


def _lenient(body: bytes) -> Any:
    """``body`` parsed by the stdlib, which reads NaN, Infinity and 1e309 as floats."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _UNREADABLE


def _classify(lenient: Any) -> ApiError:
    where = None if lenient is _UNREADABLE else _first_non_finite(lenient)
    if where is None:
        return ApiError(400, "INVALID_JSON", "The request body is not valid JSON.")
    return ApiError(
        422,
        "VALIDATION_ERROR",
        f"Invalid value for '{where}': must be a finite number (not NaN or infinite).",
        details=[{"key": where, "message": "must be a finite number", "source": "body"}],
    )


class ApiRequest(Request[Any, Any, Any]):
    """Litestar's request with the contract's answers to bodies it cannot decode.

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
        return value

    def _note_session(self, value: Any) -> None:
        session_id = value.get("session_id") if isinstance(value, dict) else None
        if validate_session_id(session_id):
            self.scope["state"]["session_id"] = session_id
