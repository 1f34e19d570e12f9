"""Pages of sessions, newest activity first: the one listing behind ``GET /api/sessions`` and
``/ui/sessions``, with its cursor (last activity, then id, both descending)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, func, or_, select

from negotiation.pagination import decode_cursor, encode_cursor, invalid_cursor
from negotiation.queries import rounds, sessions
from negotiation.schemas import SessionStatus

Position = tuple[dt.datetime, str]
_CURSOR_KIND = "sessions"


def _status_condition(status: SessionStatus, now: dt.datetime) -> ColumnElement[bool]:
    """Sessions whose status, as derived at ``now``, is ``status`` (expiry is not stored)."""
    if status == "closed":
        return sessions.c.status == "closed"
    if status == "expired":
        return and_(sessions.c.status == "active", sessions.c.expires_at <= now)
    return and_(sessions.c.status == "active", sessions.c.expires_at > now)


def sessions_page(
    conn: Connection,
    *,
    status: SessionStatus | None,
    client_id: str | None = None,
    search: str | None = None,
    after: Position | None,
    limit: int,
    now: dt.datetime,
) -> list[Row[Any]]:
    """``limit + 1`` sessions after ``after``, newest activity first (then id, descending).

    ``search`` keeps the ids that contain it, ignoring case.
    """
    query = select(sessions).order_by(sessions.c.last_activity.desc(), sessions.c.session_id.desc())
    if status is not None:
        query = query.where(_status_condition(status, now))
    if client_id is not None:
        query = query.where(sessions.c.client_id == client_id)
    if search:
        query = query.where(sessions.c.session_id.icontains(search, autoescape=True))
    if after is not None:
        at, after_id = after
        query = query.where(
            or_(
                sessions.c.last_activity < at,
                and_(sessions.c.last_activity == at, sessions.c.session_id < after_id),
            )
        )
    return list(conn.execute(query.limit(limit + 1)).all())


def sessions_with_round_counts(
    conn: Connection, **page: Any
) -> tuple[list[Row[Any]], dict[str, int]]:
    """A :func:`sessions_page` and its sessions' round counts, from one grouped query."""
    rows = sessions_page(conn, **page)
    ids = [r.session_id for r in rows[: page["limit"]]]
    if not ids:
        return rows, {}
    counted = conn.execute(
        select(rounds.c.session_id, func.count())
        .where(rounds.c.session_id.in_(ids))
        .group_by(rounds.c.session_id)
    )
    return rows, {sid: int(n) for sid, n in counted}


def page_cursor(rows: list[Row[Any]], limit: int) -> str | None:
    """The cursor after a page of ``limit + 1`` rows; None on the last page."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(_CURSOR_KIND, [last.last_activity.isoformat(), last.session_id])


def cursor_position(cursor: str) -> Position:
    """The (last activity, id) a cursor from :func:`page_cursor` resumes after; else 422."""
    position = decode_cursor(cursor, _CURSOR_KIND, list)
    try:
        at, session_id = position
        when = dt.datetime.fromisoformat(at)
    except (TypeError, ValueError):
        raise invalid_cursor() from None
    if when.tzinfo is None or not isinstance(session_id, str):
        raise invalid_cursor()
    return when, session_id
