"""Login for the pages: the API key, entered once, kept in an HttpOnly, SameSite=Strict cookie.

Cross-site request forgery: the cookie is ``SameSite=Strict``, so a browser never attaches it
to a request started by another site (a forged form post arrives logged out and changes
nothing). As a second line, every form post must come from this origin: ``Sec-Fetch-Site`` must
be ``same-origin`` (or ``none``: typed by the user), or, from browsers that do not send it,
``Origin`` must name this host. Requests with neither header do not come from a browser form.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect, Template
from litestar.types import ExceptionHandlersMap

from negotiation.auth import matching_key
from negotiation.settings import Settings

COOKIE_NAME = "negotiation_ui_key"
COOKIE_PATH = "/ui"
#: The login lasts a working day; then the key is asked for again.
COOKIE_MAX_AGE = 12 * 3600
LOGIN_PATH = "/ui/login"
HOME_PATH = "/ui/sessions"


class LoginRequired(Exception):
    """No valid key cookie: answered with a redirect to the login page."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


class CrossSiteRequest(Exception):
    """A form post that a browser says came from another site: answered with 403."""


def logged_in(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """True when the request carries the cookie with a currently configured API key."""
    settings: Settings = connection.app.state.settings
    return matching_key(connection.cookies.get(COOKIE_NAME), settings) is not None


def key_cookie(request: Request[Any, Any, Any], key: str) -> Cookie:
    """The login cookie (``Secure`` whenever the page was served over HTTPS)."""
    return Cookie(
        key=COOKIE_NAME,
        value=key,
        path=COOKIE_PATH,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def expired_cookie() -> Cookie:
    return Cookie(
        key=COOKIE_NAME, value="", path=COOKIE_PATH, max_age=0, httponly=True, samesite="strict"
    )


def same_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """False for a form post that a browser says came from another site."""
    site = connection.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == connection.headers.get("host", "")


def safe_next(target: str | None) -> str:
    """``target`` when it is a page of this UI, else the sessions page (no open redirects)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return HOME_PATH


def require_login(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: refuse cross-site form posts; visitors without a valid key go to the login page.

    A guard (not a ``before_request`` hook) so it adds to whatever hooks the app has.
    """
    if connection.scope.get("method") not in ("GET", "HEAD") and not same_origin(connection):
        raise CrossSiteRequest
    if handler.opt.get("public") or logged_in(connection):
        return
    query = connection.scope.get("query_string", b"").decode("latin-1")
    raise LoginRequired(connection.url.path + (f"?{query}" if query else ""))


def to_login(_: Request[Any, Any, Any], exc: LoginRequired) -> Response[Any]:
    return Redirect(f"{LOGIN_PATH}?next={quote(exc.target, safe='')}", status_code=303)


def refuse_cross_site(_: Request[Any, Any, Any], __: CrossSiteRequest) -> Response[Any]:
    return Template(
        template_name="ui/message.html",
        context={
            "title": "Request refused",
            "message": "This form was submitted from another site, so it was refused.",
        },
        status_code=403,
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LoginRequired: to_login,
    CrossSiteRequest: refuse_cross_site,
}
