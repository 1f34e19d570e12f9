"""The sessions table of ``/ui/sessions``: one page of sessions with their round counts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, and_, case, func, or_, select

from negotiation.queries import rounds, sessions
from negotiation.reports.history import negotiation_outcome, session_outcome
from negotiation.sessions import derived_status

StatusFilter = Literal["active", "closed", "expired"]
PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class SessionLine:
    session_id: str
    status: str
    client_id: str | None
    round_count: int
    last_activity: dt.datetime
    outcome: str


def _status_condition(status: StatusFilter, now: dt.datetime) -> ColumnElement[bool]:
    if status == "closed":
        return sessions.c.status == "closed"
    if status == "expired":
        return and_(sessions.c.status == "active", sessions.c.expires_at <= now)
    return and_(sessions.c.status == "active", sessions.c.expires_at > now)


def sessions_page(
    conn: Connection,
    *,
    status: StatusFilter | None,
    search: str | None,
    after: tuple[dt.datetime, str] | None,
    now: dt.datetime,
    limit: int = PAGE_SIZE,
) -> tuple[list[SessionLine], tuple[dt.datetime, str] | None]:
    """Sessions, newest activity first, and the position after the page (None on the last)."""
    query = select(
        sessions.c.session_id,
        sessions.c.client_id,
        sessions.c.status,
        sessions.c.expires_at,
        sessions.c.last_activity,
    )
    if status is not None:
        query = query.where(_status_condition(status, now))
    if search:
        query = query.where(sessions.c.session_id.icontains(search, autoescape=True))
    if after is not None:
        at, session_id = after
        query = query.where(
            or_(
                sessions.c.last_activity < at,
                and_(sessions.c.last_activity == at, sessions.c.session_id < session_id),
            )
        )
    query = query.order_by(sessions.c.last_activity.desc(), sessions.c.session_id.desc())
    rows = conn.execute(query.limit(limit + 1)).all()
    page = rows[:limit]
    outcomes = _negotiation_outcomes(conn, [r.session_id for r in page])
    lines = []
    for row in page:
        state = derived_status(row.status, row.expires_at, now)
        counts = outcomes.get(row.session_id, {})
        lines.append(
            SessionLine(
                session_id=row.session_id,
                status=state,
                client_id=row.client_id,
                round_count=sum(counts.values()),
                last_activity=row.last_activity,
                outcome=session_outcome(set(counts), state),
            )
        )
    more = len(rows) > limit
    return lines, (page[-1].last_activity, page[-1].session_id) if more else None


def _negotiation_outcomes(conn: Connection, session_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per session: rounds per negotiation outcome (one aggregate row per negotiation)."""
    if not session_ids:
        return {}
    decision = rounds.c.decision

    def flag(value: str) -> Any:
        return func.sum(case((decision == value, 1), else_=0)).label(value)

    query = (
        select(
            rounds.c.session_id,
            func.count().label("n"),
            flag("accept"),
            flag("reject"),
            flag("counter"),
        )
        .where(rounds.c.session_id.in_(session_ids))
        .group_by(rounds.c.session_id, rounds.c.call_id)
    )
    result: dict[str, dict[str, int]] = {}
    for row in conn.execute(query):
        present = {d for d in ("accept", "reject", "counter") if getattr(row, d)}
        outcome = negotiation_outcome(present)
        per_session = result.setdefault(row.session_id, {})
        per_session[outcome] = per_session.get(outcome, 0) + int(row.n)
    return result
