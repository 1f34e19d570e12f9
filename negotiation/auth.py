"""API keys: every path under ``/api`` (and ``/mcp``, ``/metrics``) needs a configured key."""

from __future__ import annotations

import functools
import hashlib
import hmac

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from negotiation.errors import UNAUTHORIZED_MESSAGE, ApiError, send_error
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


#: Every path under these needs a key (``/mcp`` and ``/metrics`` when those routes exist).
PROTECTED_PREFIXES = ("/api", "/mcp", "/metrics")
#: Where a key may also come as ``Authorization: Bearer <key>`` (what MCP clients send).
BEARER_PREFIXES = ("/mcp",)
_AUTHORIZATION = b"authorization"
_BEARER = b"bearer "


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def requires_key(path: str, settings: Settings) -> bool:
    """True for the paths that answer 401 ``UNAUTHORIZED`` without a configured key
    (``/metrics`` only unless ``METRICS_PUBLIC``)."""
    if settings.metrics_public and _under(path, ("/metrics",)):
        return False
    return _under(path, PROTECTED_PREFIXES)


def _presented_key(scope: Scope) -> bytes | None:
    bearer_allowed = _under(scope["path"], BEARER_PREFIXES)
    for name, value in scope["headers"]:
        name = name.lower()
        if name == _HEADER:
            return bytes(value)
        if bearer_allowed and name == _AUTHORIZATION and value[:7].lower() == _BEARER:
            return bytes(value[7:].strip())
    return None


def _is_cors_preflight(scope: Scope, settings: Settings) -> bool:
    # Browsers send a preflight without custom headers, so it cannot carry the key.
    if not settings.cors_origins or scope.get("method") != "OPTIONS":
        return False
    return any(k.lower() == b"access-control-request-method" for k, _ in scope["headers"])


class ApiKeyGate:
    """401 ``UNAUTHORIZED`` for any request under :data:`PROTECTED_PREFIXES` without a key.

    Wraps the whole application, so it answers BEFORE routing: a client without a key learns
    nothing about which routes, methods or ids exist (no 404, 405 or 422 first). With a valid
    key the request goes on, and the key's fingerprint is noted in the request state. Plain
    ASGI that looks the one header up in the raw list: a guard or Litestar middleware runs only
    after routing, and parsing the headers into an object cost a tenth of a session read.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.settings
        if scope["type"] != ScopeType.HTTP or not requires_key(scope["path"], settings):
            await self.app(scope, receive, send)
            return
        key = matching_key(_presented_key(scope), settings)
        if key is not None:
            scope.setdefault("state", {})["api_key_fingerprint"] = key_fingerprint(key)
        elif not _is_cors_preflight(scope, settings):
            await send_error(scope, send, ApiError(401, "UNAUTHORIZED", UNAUTHORIZED_MESSAGE))
            return
        await self.app(scope, receive, send)
