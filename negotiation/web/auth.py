"""Login for the pages: an API key, entered once, proves who may read them for a working day.

The browser never keeps the key. The login is Litestar's client-side session: a cookie
encrypted and authenticated (AES-GCM) with ``NEGOTIATION_UI_SECRET`` (or, unset, a secret
derived from the API keys), holding the key's fingerprint and the time of the login. Each
request checks that fingerprint against the keys configured now, so removing a key from
``NEGOTIATION_API_KEYS`` ends the logins made with it, and a login older than
:data:`COOKIE_MAX_AGE` is asked for again.

Cross-site request forgery: the cookie is ``SameSite=Strict``, so a browser never attaches it
to a request started by another site (a forged form post arrives logged out and changes
nothing). As a second line, every form post must come from this origin: ``Sec-Fetch-Site`` must
be ``same-origin`` (or ``none``: typed by the user), or, from browsers that do not send it,
``Origin`` must name this host. Requests with neither header do not come from a browser form.
Litestar's ``CSRFConfig`` is not used: its token cookie and hidden field add state to every
form and page while protecting against nothing these two checks let through, and it would
apply to the JSON API too, whose clients send a key, not a cookie.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.client_side import CookieBackendConfig
from litestar.response import Redirect, Template
from litestar.types import ASGIApp, ExceptionHandlersMap, Receive, Scope, Send

from negotiation.auth import key_fingerprint
from negotiation.settings import Settings

COOKIE_NAME = "negotiation_ui_login"
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


def login_cookie(settings: Settings, *, secure: bool = False) -> CookieBackendConfig:
    """The session cookie of the pages: encrypted, signed, HttpOnly, SameSite=Strict."""
    return CookieBackendConfig(
        secret=settings.ui_cookie_secret,
        key=COOKIE_NAME,
        path=COOKIE_PATH,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def login_middleware(settings: Settings) -> Callable[[ASGIApp], ASGIApp]:
    """Litestar's session middleware with :func:`login_cookie`, ``Secure`` over HTTPS.

    A plain function around it: Litestar deep-copies routers when it registers them, and the
    cookie's cipher cannot be copied.
    """
    plain = login_cookie(settings).middleware
    secure = login_cookie(settings, secure=True).middleware

    def middleware(app: ASGIApp) -> ASGIApp:
        over_http, over_https = plain(app), secure(app)

        async def by_scheme(scope: Scope, receive: Receive, send: Send) -> None:
            chosen = over_https if scope.get("scheme") == "https" else over_http
            await chosen(scope, receive, send)

        return by_scheme

    return middleware


def log_in(request: Request[Any, Any, Any], key: bytes) -> None:
    """Remember in the session cookie that ``key`` (a configured key) logged in now."""
    request.set_session({"key": key_fingerprint(key), "at": int(time.time())})


def logged_in(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """True for a login younger than a working day, made with a key configured now."""
    login = connection.session
    fingerprint, at = login.get("key"), login.get("at")
    if not isinstance(fingerprint, str) or not isinstance(at, int):
        return False
    if not 0 <= time.time() - at < COOKIE_MAX_AGE:
        return False
    settings: Settings = connection.app.state.settings
    found = False
    for key in settings.accepted_keys:
        # No early exit: the time taken does not depend on which key (if any) matched.
        if hmac.compare_digest(fingerprint.encode(), key_fingerprint(key).encode()):
            found = True
    return found


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
