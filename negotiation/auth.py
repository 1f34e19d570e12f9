"""API keys: every ``/api`` route requires ``X-API-Key`` matching a configured key."""

from __future__ import annotations

import functools
import hashlib
import hmac

from litestar.types import ASGIApp, Receive, Scope, Send

from negotiation.errors import ApiError
from negotiation.settings import Settings

API_KEY_HEADER = "X-API-Key"
_HEADER = API_KEY_HEADER.lower().encode()


def matching_key(presented: str | bytes | None, settings: Settings) -> bytes | None:
    """The configured key equal to ``presented``, compared in constant time against every key."""
    if not presented:
        return None
    candidate = presented.encode() if isinstance(presented, str) else presented
    found: bytes | None = None
    for key in settings.accepted_keys:
        # No early exit: the time taken does not depend on which key (if any) matched.
        if hmac.compare_digest(candidate, key):
            found = key
    return found


@functools.cache
def key_fingerprint(key: bytes) -> str:
    """A stable, non-reversible name for a key (scopes idempotency keys; safe to store)."""
    return hashlib.sha256(key).hexdigest()


class ApiKeyMiddleware:
    """401 ``UNAUTHORIZED`` unless the request carries a configured key (every ``/api`` route).

    Plain ASGI middleware on the ``/api`` router rather than a guard: Litestar copies the route
    handler for every guard call and parses the headers into an object, together a tenth of a
    session read's CPU time; this looks the one header up in the raw list.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings: Settings = scope["litestar_app"].state.settings
        presented = next((v for k, v in scope["headers"] if k.lower() == _HEADER), None)
        key = matching_key(presented, settings)
        if key is None:
            raise ApiError(401, "UNAUTHORIZED", "A valid X-API-Key header is required.")
        scope["state"]["api_key_fingerprint"] = key_fingerprint(key)
        await self.app(scope, receive, send)
