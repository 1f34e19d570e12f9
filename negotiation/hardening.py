"""Defences at the edge: JSON body checks, security headers on every response, opt-in CORS."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
from litestar import Request
from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import RequestEncodingType, ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from negotiation.errors import ApiError
from negotiation.settings import Settings

#: The deepest a JSON body may nest (a session's metadata may nest 8 levels inside it).
MAX_JSON_DEPTH = 32

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


def _takes_json_body(handler: HTTPRouteHandler) -> bool:
    field = handler.parsed_fn_signature.parameters.get("data")
    if field is None:
        return False
    media_type = getattr(field.kwarg_definition, "media_type", RequestEncodingType.JSON)
    return bool(media_type == RequestEncodingType.JSON)


def _is_json_media_type(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def check_json_body(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard for JSON routes: 415, 400 ``INVALID_JSON`` or 422 before the body is validated.

    A body must be sent as JSON, parse, use only finite in-range numbers (NaN, Infinity and
    1e309 are 422 like any other invalid amount) and nest at most :data:`MAX_JSON_DEPTH` levels
    (deeper bodies would exhaust the decoder's stack). A guard rather than a ``before_request``
    hook, so that it adds to the app's hooks instead of replacing them.
    """
    if not isinstance(connection, Request) or not isinstance(handler, HTTPRouteHandler):
        return
    if not _takes_json_body(handler):
        return
    body = await connection.body()
    if not body.strip():
        return
    if not _is_json_media_type(connection.headers.get("content-type")):
        raise ApiError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "Send the body as JSON with Content-Type: application/json.",
        )
    try:
        value = msgspec.json.decode(body)
    except RecursionError:
        raise _too_deep() from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise _undecodable(body) from None
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise _too_deep()


def _too_deep() -> ApiError:
    return ApiError(
        422, "VALIDATION_ERROR", f"The JSON body nests more than {MAX_JSON_DEPTH} levels deep."
    )


def _undecodable(body: bytes) -> ApiError:
    """400 ``INVALID_JSON``, or 422 naming the field when only a non-finite number is wrong."""
    try:
        lenient = json.loads(body)  # the stdlib reads NaN, Infinity and 1e309 as floats
    except (ValueError, RecursionError):
        lenient = None
    where = _first_non_finite(lenient)
    if where is None:
        return ApiError(400, "INVALID_JSON", "The request body is not valid JSON.")
    problem = "must be a finite number (not NaN or infinite)"
    return ApiError(
        422,
        "VALIDATION_ERROR",
        f"Invalid value for '{where}': {problem}.",
        details=[{"key": where, "message": problem, "source": "body"}],
    )


def _first_non_finite(value: Any) -> str | None:
    """The dotted path of the first NaN/infinite number in ``value`` ("body" for the root)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            return path or "body"
        if isinstance(node, dict):
            items: list[tuple[Any, Any]] = list(node.items())
        elif isinstance(node, list):
            items = list(enumerate(node))
        else:
            continue
        stack.extend(reversed([(v, f"{path}.{k}" if path else str(k)) for k, v in items]))
    return None


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays/objects in ``value`` nest deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False
