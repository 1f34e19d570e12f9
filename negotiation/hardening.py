"""Defences at the edge: security headers on every response (set by
:class:`negotiation.middleware.RequestContextMiddleware`), and CORS only when configured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from litestar.config.cors import CORSConfig
from litestar.types import HTTPResponseStartEvent, Message

from negotiation.settings import Settings

#: A strict policy for every response: no inline or foreign script, no framing, no plugins.
#: Inline styles are allowed: the HTML reports are self-contained documents with inline CSS
#: (they are also saved as files), and CSS cannot run code.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: The OpenAPI page (Swagger UI, served by the service itself) starts with an inline script;
#: everything it loads must come from this service, so the docs work, and stay, offline.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
SECURITY_FIXED = [
    (name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()
]
_CSP = b"content-security-policy"
#: Set unless the response has its own: the CSP, and on the API no caching.
_PAGE_DEFAULTS = [(_CSP, CONTENT_SECURITY_POLICY.encode())]
_DOCS_DEFAULTS = [(_CSP, DOCS_CONTENT_SECURITY_POLICY.encode())]
_API_DEFAULTS = [*_PAGE_DEFAULTS, (b"cache-control", b"no-store")]


Header = tuple[bytes, bytes]


def with_headers(
    message: Message, replace: Sequence[Header], defaults: Sequence[Header] = ()
) -> None:
    """Set ``replace`` on a response start (dropping headers of those names) and add each of
    ``defaults`` whose name is not there yet. Names are lower-case bytes, as ASGI sends them.

    One pass over the raw header list: ``MutableScopeHeaders`` searched the list once per
    header set, a few percent of a small request's time.
    """
    start = cast(HTTPResponseStartEvent, message)
    raw: list[Header] = list(start.get("headers") or ())
    names = {name.lower() for name, _ in raw}
    replaced = {name for name, _ in replace}
    if names & replaced:
        raw = [h for h in raw if h[0].lower() not in replaced]
    raw.extend(replace)
    raw.extend(h for h in defaults if h[0] not in names)
    start["headers"] = raw


def security_headers(path: str) -> tuple[Sequence[Header], Sequence[Header]]:
    """The security headers of a response to ``path``: those always set, and the defaults a
    response may set otherwise (its own CSP; on the API no caching), for :func:`with_headers`.
    """
    if path.startswith("/api/"):
        return SECURITY_FIXED, _API_DEFAULTS
    return SECURITY_FIXED, _DOCS_DEFAULTS if _is_docs(path) else _PAGE_DEFAULTS


def _is_docs(path: str) -> bool:
    return path == "/schema" or (path.startswith("/schema/") and not path.endswith(".json"))


def cors_config(settings: Settings) -> CORSConfig | None:
    """CORS for the configured origins only; None (no CORS headers at all) when none are."""
    if not settings.cors_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=[
            "X-API-Key",
            "Content-Type",
            "Idempotency-Key",
            "X-Request-ID",
            "X-Session-ID",
        ],
        expose_headers=[
            "X-Request-ID",
            "X-Session-ID",
            "Idempotent-Replayed",
            "Retry-After",
            "Link",
        ],
        allow_credentials=False,
        max_age=600,
    )
