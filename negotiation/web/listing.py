"""The sessions table of ``/ui/sessions``: one page of sessions with their round counts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, case, func, select

from negotiation.queries import rounds
from negotiation.reports.history import negotiation_outcome, session_outcome
from negotiation.schemas import SessionStatus
from negotiation.session_pages import Position, page_cursor, sessions_page
from negotiation.sessions import derived_status

PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class SessionLine:
    session_id: str
    status: str
    client_id: str | None
    round_count: int
    last_activity: dt.datetime
    outcome: str


def session_lines(
    conn: Connection,
    *,
    status: SessionStatus | None,
    search: str | None,
    after: Position | None,
    now: dt.datetime,
    limit: int = PAGE_SIZE,
) -> tuple[list[SessionLine], str | None]:
    """A page of the sessions table, and the cursor of the next (None on the last)."""
    rows = sessions_page(conn, status=status, search=search, after=after, limit=limit, now=now)
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
    return lines, page_cursor(rows, limit)


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
