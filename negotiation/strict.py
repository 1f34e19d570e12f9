"""Nothing a client sends is silently dropped: the checks that run before every API handler.

One ``before_request`` hook for the whole app (:func:`check_request`), so no handler repeats
them. On every documented route (the API and ``/health``):

* a query parameter the route does not declare is 422 ``VALIDATION_ERROR`` naming it, with the
  nearest declared name ("did you mean `session_id`?"). The declared names are read once at
  start-up from Litestar's own parameter model of each route (:func:`declare_query_params`);
* a malformed ``X-Session-ID`` header is 422 ``INVALID_SESSION_ID`` naming it, and one that
  disagrees with the session in the path or the query is 422 ``SESSION_ID_MISMATCH``
  (a disagreeing JSON body's ``session_id`` is refused where the body is parsed,
  :class:`negotiation.body.ApiRequest`).

Unknown fields of a JSON body are refused by the request models themselves
(:class:`negotiation.schemas.RequestBody` forbids extra fields). Everything runs before the
handler, so a refused request records nothing.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request
from litestar.routes import HTTPRoute

from negotiation.body import refuse_nul_in_url
from negotiation.errors import ApiError, invalid_session_id, session_mismatch
from negotiation.messages import unknown_name
from negotiation.middleware import SESSION_HEADER_STATE, usable_session_id

#: ``handler.opt`` key: the query parameter names a documented route declares.
QUERY_PARAMS = "declared_query_params"
SESSION_HEADER = "X-Session-ID"


def declare_query_params(app: Litestar) -> None:
    """Note on each documented route handler which query parameters it declares."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler, kwargs_model in route.route_handler_map.values():
            if handler.include_in_schema:
                names = sorted(p.field_alias for p in kwargs_model.expected_query_params)
                handler.opt[QUERY_PARAMS] = tuple(names)


def _refuse_unknown_query(request: Request[Any, Any, Any], known: tuple[str, ...]) -> None:
    unknown = [name for name in dict.fromkeys(request.query_params) if name not in known]
    if not unknown:
        return
    details = [
        {"key": name, "message": unknown_name("query parameter", name, known), "source": "query"}
        for name in unknown
    ]
    raise ApiError(422, "VALIDATION_ERROR", details[0]["message"], details=details)


def _check_session_header(request: Request[Any, Any, Any]) -> None:
    header: str | None = request.scope["state"].get(SESSION_HEADER_STATE)
    if header is None:
        return
    if not usable_session_id(header):
        raise invalid_session_id(header, f"the {SESSION_HEADER} header")
    in_path = request.path_params.get("session_id")
    if isinstance(in_path, str) and in_path != header:
        raise session_mismatch(header, in_path, "the URL")
    in_query = request.query_params.get("session_id") if request.scope["query_string"] else None
    if in_query is not None and in_query != header:
        raise session_mismatch(header, in_query, "the query's session_id")


async def check_request(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook of the app: the URL's NUL check, then the checks above."""
    await refuse_nul_in_url(request)
    known = request.route_handler.opt.get(QUERY_PARAMS)
    if known is None:  # not a documented route (pages, the OpenAPI document)
        return
    if request.scope["query_string"]:
        _refuse_unknown_query(request, known)
    _check_session_header(request)
