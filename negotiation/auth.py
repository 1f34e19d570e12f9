"""API keys: every ``/api`` route requires ``X-API-Key`` matching a configured key."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from negotiation.errors import ApiError
from negotiation.settings import Settings

API_KEY_HEADER = "X-API-Key"


def matching_key(presented: str | None, settings: Settings) -> bytes | None:
    """The configured key equal to ``presented``, compared in constant time against every key."""
    if not presented:
        return None
    candidate = presented.encode()
    found: bytes | None = None
    for key in settings.accepted_keys:
        # No early exit: the time taken does not depend on which key (if any) matched.
        if hmac.compare_digest(candidate, key):
            found = key
    return found


def key_fingerprint(key: bytes) -> str:
    """A stable, non-reversible name for a key (scopes idempotency keys; safe to store)."""
    return hashlib.sha256(key).hexdigest()


async def require_api_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: 401 ``UNAUTHORIZED`` unless the request carries a configured API key.

    ``async`` although it never awaits: Litestar runs a plain ``def`` guard in a worker thread,
    a thread hop on every API request for a few microseconds of work.
    """
    settings: Settings = connection.app.state.settings
    key = matching_key(connection.headers.get(API_KEY_HEADER), settings)
    if key is None:
        raise ApiError(401, "UNAUTHORIZED", "A valid X-API-Key header is required.")
    connection.state.api_key_fingerprint = key_fingerprint(key)
