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
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template

from negotiation.auth import matching_key
from negotiation.settings import Settings

COOKIE_NAME = "negotiation_ui_key"
COOKIE_PATH = "/ui"
#: The login lasts a working day; then the key is asked for again.
COOKIE_MAX_AGE = 12 * 3600
LOGIN_PATH = "/ui/login"
HOME_PATH = "/ui/sessions"


def logged_in(request: Request[Any, Any, Any]) -> bool:
    """True when the request carries the cookie with a currently configured API key."""
    settings: Settings = request.app.state.settings
    return matching_key(request.cookies.get(COOKIE_NAME), settings) is not None


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


def same_origin(request: Request[Any, Any, Any]) -> bool:
    """False for a form post that a browser says came from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def safe_next(target: str | None) -> str:
    """``target`` when it is a page of this UI, else the sessions page (no open redirects)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return HOME_PATH


async def before_ui_request(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """Refuse cross-site form posts; send visitors without a valid key to the login page."""
    if request.method not in ("GET", "HEAD") and not same_origin(request):
        return Template(
            template_name="ui/message.html",
            context={
                "title": "Request refused",
                "message": "This form was submitted from another site, so it was refused.",
            },
            status_code=403,
        )
    if request.route_handler.opt.get("public") or logged_in(request):
        return None
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"{LOGIN_PATH}?next={quote(target, safe='')}", status_code=303)
