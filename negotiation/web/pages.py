"""The pages: login, the sessions table (filter, search, create) and one session's history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, get_args
from urllib.parse import quote, urlencode

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template
from pydantic import ValidationError

from negotiation.auth import matching_key
from negotiation.controllers.params import Ctx, RequestContext
from negotiation.db import Database
from negotiation.errors import ApiError
from negotiation.profiles import current_profiles
from negotiation.reports.chart import build_chart
from negotiation.reports.history import session_report
from negotiation.schemas import SessionCreate, SessionStatus
from negotiation.session_pages import Position, cursor_position
from negotiation.sessions import close_session, create_session, purge_session
from negotiation.settings import Settings
from negotiation.web.auth import (
    HOME_PATH,
    LOGIN_PATH,
    log_in,
    logged_in,
    safe_next,
)
from negotiation.web.listing import session_lines

# The sessions API's create function can replace this one when both are merged.

STATUSES: tuple[SessionStatus, ...] = get_args(SessionStatus)
MAX_TTL_SECONDS = 365 * 24 * 3600


@dataclass
class LoginForm:
    api_key: str = ""
    next: str = ""


@dataclass
class SessionForm:
    session_id: str = ""
    client_id: str = ""
    ttl_seconds: str = ""
    profile: str = ""


@dataclass
class PurgeForm:
    confirm_id: str = ""


def _page_cursor(cursor: str | None) -> Position | None:
    if not cursor:
        return None
    try:
        return cursor_position(cursor)
    except ApiError:
        return None  # A stale or edited link: start from the newest.


class PagesController(Controller):
    path = "/ui"
    include_in_schema = False

    @get("/", name="ui-home")
    async def home(self) -> Redirect:
        return Redirect(HOME_PATH, status_code=303)

    @get("/login", opt={"public": True})
    async def login_form(
        self, request: Request[Any, Any, Any], next: FromQuery[str | None] = None
    ) -> Template | Redirect:
        if logged_in(request):
            return Redirect(safe_next(next), status_code=303)
        return Template(
            template_name="ui/login.html", context={"next": safe_next(next), "error": None}
        )

    @post("/login", opt={"public": True}, status_code=303)
    async def login(
        self, request: Request[Any, Any, Any], data: URLEncodedBody[LoginForm]
    ) -> Template | Redirect:
        settings: Settings = request.app.state.settings
        key = matching_key(data.api_key, settings)
        if key is None:
            return Template(
                template_name="ui/login.html",
                context={"next": safe_next(data.next), "error": "That API key is not valid."},
                status_code=401,
            )
        log_in(request, key)
        return Redirect(safe_next(data.next), status_code=303)

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        request.clear_session()
        return Redirect(LOGIN_PATH, status_code=303)

    @get("/sessions")
    async def sessions(
        self,
        ctx: Ctx,
        status: FromQuery[str | None] = None,
        q: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        purged: FromQuery[str | None] = None,
        rounds: FromQuery[str | None] = None,
    ) -> Template:
        count = int(rounds) if rounds and rounds.isdigit() and len(rounds) < 10 else 0
        done = (purged[:128], count) if purged else None
        return await _sessions_page(ctx.db, ctx.now, status, q, cursor, purged=done)

    @post("/sessions", status_code=303)
    async def create(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        data: URLEncodedBody[SessionForm],
    ) -> Template | Redirect:
        settings: Settings = request.app.state.settings
        field = "ttl_seconds"  # the field the error below is about
        try:
            ttl = _ttl(data.ttl_seconds, settings.session_ttl_seconds)
            field = "client_id"
            client_id = data.client_id.strip() or None
            if client_id is not None and len(client_id) > 255:
                raise ApiError(422, "VALIDATION_ERROR", "Client id must be at most 255 characters.")
            field = "session_id"
            fields = SessionCreate(
                session_id=data.session_id.strip() or None,
                client_id=client_id,
                ttl_seconds=ttl,
                profile=_profile(data.profile),
            )
            row = await ctx.db.write(
                create_session, fields, default_ttl=settings.session_ttl_seconds, now=ctx.now
            )
        except ApiError as exc:
            return await _sessions_page(
                ctx.db,
                ctx.now,
                None,
                None,
                None,
                form=data,
                error=FormError(exc.message, field),
                status_code=exc.status_code,
            )
        return Redirect(f"{_session_path(row.session_id)}?created=1", status_code=303)

    @get("/sessions/{session_id:str}")
    async def session(
        self,
        ctx: Ctx,
        session_id: FromPath[str],
        created: FromQuery[str | None] = None,
        closed: FromQuery[str | None] = None,
    ) -> Template:
        return await _session_page(ctx, session_id, created=bool(created), closed=bool(closed))

    @post("/sessions/{session_id:str}/close", status_code=303)
    async def close(self, ctx: Ctx, session_id: FromPath[str]) -> Template | Redirect:
        ttl = ctx.policy.session_ttl_seconds
        try:
            await ctx.db.write(close_session, session_id, default_ttl=ttl, now=ctx.now)
        except ApiError as exc:
            return _message("Session not found", exc.message, exc.status_code)
        return Redirect(f"{_session_path(session_id)}?closed=1", status_code=303)

    @post("/sessions/{session_id:str}/purge", status_code=303)
    async def purge(
        self, ctx: Ctx, session_id: FromPath[str], data: URLEncodedBody[PurgeForm]
    ) -> Template | Redirect:
        if data.confirm_id.strip() != session_id:
            error = FormError(
                f"Type the session id {session_id} exactly to purge it.", "confirm_id"
            )
            return await _session_page(ctx, session_id, error=error, status_code=422)
        try:
            purged = await ctx.db.write(purge_session, session_id)
        except ApiError as exc:
            return _message("Session not found", exc.message, exc.status_code)
        query = urlencode({"purged": session_id, "rounds": purged})
        return Redirect(f"{HOME_PATH}?{query}", status_code=303)


@dataclass(frozen=True)
class FormError:
    """An error shown at the top of the page, linked to the field it is about."""

    message: str
    field: str


def _session_path(session_id: str) -> str:
    return f"/ui/sessions/{quote(session_id, safe='')}"


def _message(title: str, message: str, status_code: int) -> Template:
    return Template(
        template_name="ui/message.html",
        context={"title": title, "message": message},
        status_code=status_code,
    )


async def _session_page(
    ctx: RequestContext,
    session_id: str,
    *,
    created: bool = False,
    closed: bool = False,
    error: FormError | None = None,
    status_code: int = 200,
) -> Template:
    report = await ctx.db.read(
        session_report, session_id, max_markup=ctx.policy.max_markup, now=ctx.now
    )
    if report is None:
        return _message("Session not found", f"There is no session {session_id}.", 404)
    return Template(
        template_name="ui/session.html",
        context={
            "report": report,
            "chart": build_chart(report.rounds),
            "created": created,
            "closed": closed,
            "error": error,
        },
        status_code=status_code,
    )


def _profile(raw: str) -> str | None:
    """The pricing profile picked in the form (empty: none, the load's or standard decides)."""
    name = raw.strip()
    if not name:
        return None
    try:
        return SessionCreate(profile=name).profile
    except ValidationError:
        raise ApiError(
            422, "PROFILE_NOT_FOUND", f"There is no pricing profile {name}: pick one listed."
        ) from None


def _ttl(raw: str, default: int) -> int:
    if not raw.strip():
        return default
    try:
        ttl = int(raw)
    except ValueError:
        ttl = 0
    if not 1 <= ttl <= MAX_TTL_SECONDS:
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            f"Time to live must be a whole number of seconds, 1-{MAX_TTL_SECONDS}.",
        )
    return ttl


async def _sessions_page(
    db: Database,
    now: dt.datetime,
    status: str | None,
    search: str | None,
    cursor: str | None,
    *,
    form: SessionForm | None = None,
    error: FormError | None = None,
    purged: tuple[str, int] | None = None,
    status_code: int = 200,
) -> Template:
    chosen: SessionStatus | None = next((s for s in STATUSES if s == status), None)
    search = (search or "").strip()[:128] or None
    lines, after = await db.read(
        session_lines, status=chosen, search=search, after=_page_cursor(cursor), now=now
    )
    profiles = await db.read(current_profiles)
    next_url = None
    if after is not None:
        query = {"status": chosen or "", "q": search or "", "cursor": after}
        next_url = "/ui/sessions?" + urlencode({k: v for k, v in query.items() if v})
    return Template(
        template_name="ui/sessions.html",
        context={
            "lines": lines,
            "statuses": STATUSES,
            "status": chosen,
            "q": search or "",
            "next_url": next_url,
            "paged": cursor is not None,
            "form": form or SessionForm(),
            "error": error,
            "purged": purged,
            "profiles": profiles,
        },
        status_code=status_code,
    )
