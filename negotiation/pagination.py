"""Opaque cursors and ``Link: rel="next"`` headers for paginated lists."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

from litestar.datastructures import URL

from negotiation.errors import ApiError

R = TypeVar("R")

_VERSION = "v1"
MAX_LIMIT = 1000
#: Row ids are INTEGER columns: PostgreSQL refuses larger values even in a comparison.
_MAX_ID = 2_147_483_647


def encode_cursor(kind: str, position: Any) -> str:
    """A cursor that resumes a ``kind`` listing after ``position``."""
    raw = json.dumps([_VERSION, kind, position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, position_type: type | tuple[type, ...]) -> Any:
    """The position a cursor from :func:`encode_cursor` names; 422 ``INVALID_CURSOR`` otherwise."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        version, cursor_kind, position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error):
        raise invalid_cursor() from None
    if version != _VERSION or cursor_kind != kind or not isinstance(position, position_type):
        raise invalid_cursor()
    if isinstance(position, bool):
        raise invalid_cursor()
    # Positions are ids the service issued: 32-bit row ids, or text the database can hold.
    if isinstance(position, int) and not 0 <= position <= _MAX_ID:
        raise invalid_cursor()
    if isinstance(position, str) and "\x00" in position:
        raise invalid_cursor()
    return position


def next_cursor(
    rows: Sequence[R], limit: int, kind: str, position: Callable[[R], Any]
) -> str | None:
    """The cursor after a page, from a query that fetched ``limit + 1`` rows; None on the last."""
    return encode_cursor(kind, position(rows[limit - 1])) if len(rows) > limit else None


def invalid_cursor() -> ApiError:
    """422 ``INVALID_CURSOR``: for a cursor that decodes but names no valid position."""
    return ApiError(
        422, "INVALID_CURSOR", "The cursor was not issued by this service; start again without it."
    )


def next_link(url: URL, after_id: int) -> str:
    """``<url with after_id=...>; rel="next"``, other query parameters kept."""
    query = [(k, v) for k, v in url.query_params.multi_items() if k != "after_id"]
    query.append(("after_id", str(after_id)))
    return f'<{url.path}?{urlencode(query)}>; rel="next"'
