"""The error envelope and the exception handlers that produce it for every 4xx/5xx."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from litestar.handlers import BaseRouteHandler
from litestar.params import ParameterKwarg
from litestar.serialization import encode_json
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_405_METHOD_NOT_ALLOWED,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap, Scope, Send

from negotiation.db.errors import DatabaseBusy, DatabaseUnavailable, InvalidData
from negotiation.ids import SESSION_ID_REGEX, validate_session_id
from negotiation.messages import Failure, shorten, validation_failures
from negotiation.metrics import DB_BUSY, DB_UNAVAILABLE
from negotiation.middleware import PATH_IDS_STATE
from negotiation.responses import json_headers, send_json

logger = logging.getLogger("negotiation.errors")


class ApiError(Exception):
    """An error the client can act on: an HTTP status, an UPPER_SNAKE code and a sentence."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def invalid_session_id(session_id: str, where: str = "the request") -> ApiError:
    """422 ``INVALID_SESSION_ID`` naming the id and where it came from."""
    return ApiError(
        422,
        "INVALID_SESSION_ID",
        f"The session id '{shorten(session_id)}' in {where} is not valid: a session id is 1-128 "
        "characters of letters, digits, '_', '-', '.' or ':'.",
    )


def session_mismatch(header: str, other: str, where: str) -> ApiError:
    """422 ``SESSION_ID_MISMATCH``: ``X-Session-ID`` names another session than ``where``."""
    return ApiError(
        422,
        "SESSION_ID_MISMATCH",
        f"The X-Session-ID header names session '{header}' but {where} names "
        f"'{shorten(other)}': send one session id, or the same one in both.",
    )


def not_found(code: str, what: str, ident: object) -> ApiError:
    """404 ``code`` with the message ``<what> <ident> not found``."""
    return ApiError(HTTP_404_NOT_FOUND, code, f"{what} {ident} not found")


UNAUTHORIZED_MESSAGE = "A valid X-API-Key header is required."


def envelope(
    request: Request[Any, Any, Any], code: str, message: str, details: Any = None
) -> dict[str, Any]:
    """The body of every error response."""
    return error_body(request.scope, code, message, details)


def error_body(scope: Scope, code: str, message: str, details: Any = None) -> dict[str, Any]:
    """:func:`envelope` from the ASGI scope, for answers given before routing.

    The code is noted in the request state for the refusals metric.
    """
    state = scope.setdefault("state", {})
    state["error_code"] = code
    return {
        "success": False,
        "error": {"code": code, "message": message, "details": details},
        "request_id": state.get("request_id"),
        "session_id": state.get("session_id"),
        "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
    }


def _respond(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    return Response(
        envelope(request, code, message, details), status_code=status, headers=headers or {}
    )


async def send_error(scope: Scope, send: Send, exc: ApiError) -> None:
    """Answer ``exc`` in the envelope straight on the ASGI channel (no route, no Request)."""
    body = encode_json(error_body(scope, exc.code, exc.message, exc.details))
    await send_json(send, exc.status_code, json_headers(body, exc.headers), body)


def handle_api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[dict[str, Any]]:
    return _respond(request, exc.status_code, exc.code, exc.message, exc.details, exc.headers)


def _validation_error(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[dict[str, Any]]:
    handler = request.scope.get("route_handler")
    failures = validation_failures(exc, handler) if isinstance(exc, ValidationException) else []
    if ids := [f for f in failures if f["source"] != "body" and _is_session_id(handler, f["key"])]:
        # With other refused parameters, those are the answer: as when handlers checked the id.
        failures = [f for f in failures if f not in ids]
        if not failures:
            return handle_api_error(request, invalid_session_id(_refused(request, ids[0])))
    message = failures[0]["message"] if failures else "The request is not valid."
    return _respond(request, 422, "VALIDATION_ERROR", message, failures or None)


def _is_session_id(handler: BaseRouteHandler | None, key: str) -> bool:
    """True for a path or query parameter typed as a session id
    (:data:`negotiation.controllers.params.SessionId`): its refusal is ``INVALID_SESSION_ID``."""
    field = handler.parsed_fn_signature.parameters.get(key) if handler is not None else None
    kwarg = field.kwarg_definition if field is not None else None
    return isinstance(kwarg, ParameterKwarg) and kwarg.pattern == SESSION_ID_REGEX


def _refused(request: Request[Any, Any, Any], failure: Failure) -> str:
    """The value Litestar refused: the path's, or the query's (its last one, as Litestar reads)."""
    key = failure["key"]
    if failure["source"] == "path":
        return str(request.path_params.get(key, ""))
    values = request.query_params.getall(key, [])
    return str(values[-1]) if values else ""


_HTTP_CODES = {
    HTTP_400_BAD_REQUEST: ("BAD_REQUEST", "The request could not be understood."),
    401: ("UNAUTHORIZED", UNAUTHORIZED_MESSAGE),
    403: ("FORBIDDEN", "This key may not do that."),
    HTTP_404_NOT_FOUND: ("NOT_FOUND", "No such resource: check the URL."),
    HTTP_405_METHOD_NOT_ALLOWED: ("METHOD_NOT_ALLOWED", "That method is not allowed here."),
    HTTP_413_REQUEST_ENTITY_TOO_LARGE: ("PAYLOAD_TOO_LARGE", "The request body is too large."),
    HTTP_415_UNSUPPORTED_MEDIA_TYPE: (
        "UNSUPPORTED_MEDIA_TYPE",
        "Send the body as JSON with Content-Type: application/json.",
    ),
    429: ("TOO_MANY_REQUESTS", "Too many requests: slow down and retry."),
}


def handle_http_exception(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[dict[str, Any]]:
    """Litestar's own exceptions (routing, validation, parsing) in the contract's envelope."""
    status = exc.status_code
    headers = dict(exc.headers or {})
    if isinstance(exc, ValidationException) or (
        status == HTTP_400_BAD_REQUEST and isinstance(exc.extra, list)
    ):
        return _validation_error(request, exc)
    if status == HTTP_400_BAD_REQUEST and _is_json_error(exc):
        return _respond(request, 400, "INVALID_JSON", "The request body is not valid JSON.")
    if isinstance(exc, NotFoundException) and exc.detail in ("Not Found", "", None):
        # No route took the path: where the app's templates put a session id (PathIds).
        named = request.scope.get("state", {}).get(PATH_IDS_STATE, {}).get("session_id")
        if named is not None and (named in (".", "..") or not validate_session_id(named)):
            # A session route whose id could not be a path segment, e.g. "../x" or "a b/c".
            return handle_api_error(request, invalid_session_id(named, "the URL"))
        return _respond(
            request, 404, "NOT_FOUND", f"No route for {request.method} {request.url.path}."
        )
    if isinstance(exc, MethodNotAllowedException):
        return _respond(
            request,
            405,
            "METHOD_NOT_ALLOWED",
            f"{request.method} is not allowed on {request.url.path}.",
            headers=headers,
        )
    if isinstance(exc, NotAuthorizedException):
        return _respond(request, 401, "UNAUTHORIZED", UNAUTHORIZED_MESSAGE)
    code, message = _HTTP_CODES.get(
        status, ("ERROR" if status < 500 else "INTERNAL_ERROR", exc.detail)
    )
    if status >= HTTP_500_INTERNAL_SERVER_ERROR:
        message = "The server could not complete the request."
    return _respond(request, status, code, message, headers=headers)


def _is_json_error(exc: HTTPException) -> bool:
    detail = (exc.detail or "").lower()
    return (
        isinstance(exc, SerializationException)
        or isinstance(exc.__cause__, SerializationException)
        or "json" in detail
        or "decode" in detail
    )


#: The 503 answers: code, message and Retry-After seconds for each database condition.
_DATABASE_DOWN: dict[type[Exception], tuple[str, str, str]] = {
    DatabaseUnavailable: (
        "DATABASE_UNAVAILABLE",
        "The database is unavailable; retry shortly.",
        "2",
    ),
    DatabaseBusy: ("DATABASE_BUSY", "The database is busy; retry shortly.", "1"),
}


def handle_database_down(
    request: Request[Any, Any, Any], exc: DatabaseUnavailable | DatabaseBusy
) -> Response[dict[str, Any]]:
    """503 with ``Retry-After`` while the database is unreachable or locked."""
    code, message, retry_after = _DATABASE_DOWN[type(exc)]
    (DB_BUSY if isinstance(exc, DatabaseBusy) else DB_UNAVAILABLE).inc()
    logger.warning("%s: %s", code.lower(), exc)
    return _respond(
        request,
        HTTP_503_SERVICE_UNAVAILABLE,
        code,
        message,
        headers={"Retry-After": retry_after},
    )


def _invalid_data_message(exc: InvalidData) -> str:
    return f"A value in the request cannot be stored or searched for: {exc}."


def handle_invalid_data(
    request: Request[Any, Any, Any], exc: InvalidData
) -> Response[dict[str, Any]]:
    """A value the database cannot store or compare (e.g. a NUL character on PostgreSQL)."""
    return _respond(request, 422, "VALIDATION_ERROR", _invalid_data_message(exc))


def as_api_error(exc: Exception) -> ApiError | None:
    """The error the HTTP API answers for ``exc``, for callers outside HTTP (MCP tools);
    None for an unexpected exception (a 500 over HTTP)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DatabaseUnavailable | DatabaseBusy):
        code, message, retry_after = _DATABASE_DOWN[type(exc)]
        return ApiError(
            HTTP_503_SERVICE_UNAVAILABLE, code, message, None, {"Retry-After": retry_after}
        )
    if isinstance(exc, InvalidData):
        return ApiError(422, "VALIDATION_ERROR", _invalid_data_message(exc))
    return None


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Anything else: logged with its traceback, never shown to the client."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _respond(
        request,
        HTTP_500_INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        "The server could not complete the request.",
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiError: handle_api_error,
    HTTPException: handle_http_exception,
    DatabaseUnavailable: handle_database_down,
    DatabaseBusy: handle_database_down,
    InvalidData: handle_invalid_data,
    Exception: handle_unexpected,
}
