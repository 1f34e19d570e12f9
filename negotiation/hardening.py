"""Defences at the edge: security headers on every response, and CORS only when configured."""

from __future__ import annotations

from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from negotiation.settings import Settings

#: A strict policy for every response: no inline or foreign script, no framing, no plugins.
#: Inline styles are allowed: the HTML reports are self-contained documents with inline CSS
#: (they are also saved as files), and CSS cannot run code.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: The interactive OpenAPI pages load their viewer from a CDN with an inline bootstrap script,
#: so they keep only the framing ban.
DOCS_CONTENT_SECURITY_POLICY = "frame-ancestors 'none'"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response (handlers may set their own CSP)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        policy = DOCS_CONTENT_SECURITY_POLICY if _is_docs(path) else CONTENT_SECURITY_POLICY

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = policy
                if path.startswith("/api/") and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


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
