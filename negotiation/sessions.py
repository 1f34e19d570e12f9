"""Sessions: units of work and queries for the session resource and its lifecycle.

A session's stored ``status`` is ``active`` or ``closed``; ``expired`` is derived when read
(``expires_at <= now``), so listing by status is correct without a background job.

Locking on PostgreSQL: a round that names a session is first tried in one statement that
updates the session's row before it inserts the round (so it waits for, and then sees, anyone
holding that row); when that finds the negotiation changed, the round's transaction locks the
session's row first, which serialises the rounds of a session. A purge locks the session row,
then the calls it touches in id order. Nothing locks a call and then waits for a session, so
these never deadlock. SQLite runs one writer at a time (``BEGIN IMMEDIATE``), so the same code
is serial there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from negotiation.db.statements import Conn, HotStatement
from negotiation.errors import ApiError, invalid_session_id, not_found
from negotiation.ids import generate_session_id, validate_session_id
from negotiation.profiles import check_profile_known
from negotiation.queries import calls, rounds, session_used_by_rounds, sessions
from negotiation.schemas import SessionCreate, SessionStatus

DECISIONS = ("accept", "counter", "reject")


def check_session_id(session_id: str | None) -> None:
    """422 ``INVALID_SESSION_ID`` unless ``session_id`` is None or a valid id."""
    if session_id is not None and not validate_session_id(session_id):
        raise invalid_session_id(session_id)


def session_exists_error(session_id: str) -> ApiError:
    return ApiError(
        409,
        "SESSION_EXISTS",
        f"Session ID '{session_id}' already exists. Please use a different ID or omit it for "
        "auto-generation.",
    )


def derived_status(stored: str, expires_at: dt.datetime | None, now: dt.datetime) -> SessionStatus:
    """``closed`` as stored; an active session past ``expires_at`` reads as ``expired``."""
    if stored == "closed":
        return "closed"
    return "expired" if expires_at is not None and expires_at <= now else "active"


def session_view(row: Any, now: dt.datetime) -> dict[str, Any]:
    """A ``sessions`` row as the API shows it."""
    m = row._mapping
    return {
        "session_id": m["session_id"],
        "client_id": m["client_id"],
        "metadata": m["metadata"],
        "status": derived_status(m["status"], m["expires_at"], now),
        "ttl_seconds": m["ttl_seconds"],
        "created_at": m["created_at"],
        "last_activity": m["last_activity"],
        "expires_at": m["expires_at"],
        "profile": m["profile"],
    }


_INSERT_IF_ABSENT = HotStatement(
    column_keys=[c.key for c in sessions.c],
    postgresql=postgresql.insert(sessions)
    .on_conflict_do_nothing(index_elements=[sessions.c.session_id])
    .returning(*sessions.c),
    sqlite=sqlite.insert(sessions)
    .on_conflict_do_nothing(index_elements=[sessions.c.session_id])
    .returning(*sessions.c),
)


def _insert_if_absent(conn: Conn, values: dict[str, Any]) -> Any | None:
    """Insert a session row unless the id is taken; the new row, or None when it was.

    ``ON CONFLICT DO NOTHING`` rather than catching the unique violation: on PostgreSQL a
    concurrent insert of the same id waits for the first to commit and then does nothing, and
    the transaction stays usable either way.
    """
    return _INSERT_IF_ABSENT.first(conn, values)


def new_session(session_id: str, ttl: int, now: dt.datetime, **extra: Any) -> dict[str, Any]:
    """A new session row's values."""
    return {
        "session_id": session_id,
        "status": "active",
        "ttl_seconds": ttl,
        "created_at": now,
        "last_activity": now,
        "expires_at": now + dt.timedelta(seconds=ttl),
        **extra,
    }


#: ``FOR UPDATE`` on PostgreSQL (SQLite has no row locks; its compiler leaves it out).
_LOCKED_SESSION = HotStatement(
    select(sessions).where(sessions.c.session_id == bindparam("b_session_id")).with_for_update()
)


def _locked_session(conn: Conn, session_id: str) -> Any | None:
    return _LOCKED_SESSION.first(conn, {"b_session_id": session_id})


def create_session(
    conn: Connection, data: SessionCreate, *, default_ttl: int, now: dt.datetime
) -> Any:
    """Create a session under the caller's id or a generated one; 409 if the id is in use."""
    check_session_id(data.session_id)
    check_profile_known(conn, data.profile)
    session_id = data.session_id or generate_session_id(now)
    if data.session_id is not None and session_used_by_rounds(conn, session_id):
        raise session_exists_error(session_id)
    values = new_session(
        session_id,
        data.ttl_seconds or default_ttl,
        now,
        client_id=data.client_id,
        metadata=data.metadata,
        profile=data.profile,
    )
    row = _insert_if_absent(conn, values)
    if row is None:
        raise session_exists_error(session_id)
    return row


#: The session's row, locked on PostgreSQL, as a CTE a round's first statement joins: the lock
#: that serialises a session's rounds, taken in the round trip that reads the call.
#: What a round reads of its session's row.
SESSION_FOR_ROUND = (
    sessions.c.status,
    sessions.c.ttl_seconds,
    sessions.c.expires_at,
    sessions.c.profile.label("session_profile"),
)
LOCKED_SESSION = (
    select(*SESSION_FOR_ROUND)
    .where(sessions.c.session_id == bindparam("b_session_id"))
    .with_for_update()
    .cte("locked_session")
)


def session_for_round(
    conn: Conn,
    session_id: str,
    session: Any | None,
    *,
    ttl: int,
    require: bool,
    now: dt.datetime,
) -> dt.datetime | None:
    """Check a round may be recorded in the session, given its row as the caller locked it
    (None: there is none); the new ``expires_at`` its activity sets, or None when the id was
    just registered (its row already says so).

    An unseen id is registered (with ``ttl``), unless ``require`` is set: then only created
    sessions, or ids already used by rounds, are accepted.
    """
    if session is None:
        if require and not session_used_by_rounds(conn, session_id):
            raise not_found("SESSION_NOT_FOUND", "Session", session_id)
        if _insert_if_absent(conn, new_session(session_id, ttl, now)) is not None:
            return None
        # A concurrent round registered it first; continue with that row.
        session = _locked_session(conn, session_id)
        assert session is not None
    return check_session_open(session_id, session, now)


def check_session_open(session_id: str, session: Any, now: dt.datetime) -> dt.datetime:
    """409 ``SESSION_CLOSED`` or 410 ``SESSION_EXPIRED`` unless the session (its row) takes
    rounds; the new ``expires_at`` a round's activity sets."""
    if session.status == "closed":
        raise ApiError(409, "SESSION_CLOSED", f"Session {session_id} is closed")
    if session.expires_at <= now:
        raise ApiError(410, "SESSION_EXPIRED", f"Session {session_id} has expired")
    return now + dt.timedelta(seconds=session.ttl_seconds)


def session_detail(
    conn: Connection, session_id: str, *, default_ttl: int, now: dt.datetime
) -> dict[str, Any] | None:
    """The session with its round statistics, or None when the id was never created nor used."""
    row = conn.execute(select(sessions).where(sessions.c.session_id == session_id)).first()
    per_call = _rounds_per_call(conn, session_id)
    if row is None and not per_call:
        return None
    if row is not None:
        view = session_view(row, now)
    else:
        view = _view_from_rounds(session_id, per_call, default_ttl, now)
    view["stats"] = _stats(conn, per_call)
    return view


def _rounds_per_call(conn: Connection, session_id: str) -> Sequence[Row[Any]]:
    """Per call of the session, in order of first round: counts, key round ids, time span.

    One aggregate on ``idx_negotiations_session_id``, whatever the number of rounds.
    """
    return conn.execute(
        select(
            rounds.c.call_id,
            func.count().label("n"),
            func.max(rounds.c.id).label("last_id"),
            func.max(case((rounds.c.counter_offer.is_not(None), rounds.c.id))).label("counter_id"),
            func.max(case((rounds.c.decision == "accept", rounds.c.id))).label("accept_id"),
            func.min(rounds.c.timestamp).label("first_at"),
            func.max(rounds.c.timestamp).label("last_at"),
        )
        .where(rounds.c.session_id == session_id)
        .group_by(rounds.c.call_id)
        .order_by(func.min(rounds.c.id))
    ).all()


def _latest(ids: Any) -> int | None:
    return max((i for i in ids if i is not None), default=None)


def _stats(conn: Connection, per_call: Sequence[Row[Any]]) -> dict[str, Any]:
    """The session's stats; the last round, last counter and last accept fetched by id at once."""
    last_id = _latest(g.last_id for g in per_call)
    counter_id = _latest(g.counter_id for g in per_call)
    accept_id = _latest(g.accept_id for g in per_call)
    wanted = {i for i in (last_id, counter_id, accept_id) if i is not None}
    picked: dict[int, Any] = {}
    if wanted:
        query = select(
            rounds.c.id, rounds.c.carrier_offer, rounds.c.counter_offer, rounds.c.decision
        ).where(rounds.c.id.in_(wanted))
        picked = {r.id: r for r in conn.execute(query)}
    last = picked.get(last_id) if last_id is not None else None
    return {
        "round_count": sum(g.n for g in per_call),
        "call_ids": [g.call_id for g in per_call if g.call_id is not None],
        "last_offer": last.carrier_offer if last is not None else None,
        "last_counter_offer": picked[counter_id].counter_offer if counter_id else None,
        "last_decision": last.decision if last is not None and last.decision in DECISIONS else None,
        "agreed_rate": picked[accept_id].carrier_offer if accept_id else None,
    }


def _view_from_rounds(
    session_id: str, per_call: Sequence[Row[Any]], ttl: int, now: dt.datetime
) -> dict[str, Any]:
    """A session that has rounds but no ``sessions`` row (written before sessions existed)."""
    starts = [g.first_at for g in per_call if g.first_at is not None]
    ends = [g.last_at for g in per_call if g.last_at is not None]
    last_activity = max(ends, default=None)
    expires_at = last_activity + dt.timedelta(seconds=ttl) if last_activity else None
    return {
        "session_id": session_id,
        "client_id": None,
        "metadata": None,
        "status": derived_status("active", expires_at, now),
        "ttl_seconds": ttl,
        "created_at": min(starts, default=None),
        "last_activity": last_activity,
        "expires_at": expires_at,
    }


def close_session(conn: Connection, session_id: str, *, default_ttl: int, now: dt.datetime) -> None:
    """Mark the session closed (idempotent); its rounds stay. 404 if never created nor used."""
    closed = conn.execute(
        update(sessions).where(sessions.c.session_id == session_id).values(status="closed")
    )
    if closed.rowcount:
        return
    if not session_used_by_rounds(conn, session_id):
        raise not_found("SESSION_NOT_FOUND", "Session", session_id)
    # Known only from rounds: give it a row so the closed status sticks.
    _insert_if_absent(conn, new_session(session_id, default_ttl, now) | {"status": "closed"})


def purge_session(conn: Connection, session_id: str) -> int:
    """Delete the session and every round recorded in it; the number of rounds deleted.

    Each affected call's ``negotiation_rounds`` is recounted so it keeps matching its rounds.
    """
    found = _locked_session(conn, session_id) is not None
    deleted = conn.execute(
        delete(rounds).where(rounds.c.session_id == session_id).returning(rounds.c.call_id)
    ).all()
    if not found and not deleted:
        raise not_found("SESSION_NOT_FOUND", "Session", session_id)
    conn.execute(delete(sessions).where(sessions.c.session_id == session_id))
    call_ids = sorted({r.call_id for r in deleted if r.call_id is not None})
    if call_ids:
        if conn.dialect.name == "postgresql":
            conn.execute(
                select(calls.c.id)
                .where(calls.c.id.in_(call_ids))
                .order_by(calls.c.id)
                .with_for_update()
            ).all()
        remaining = select(func.count()).where(rounds.c.call_id == calls.c.id).scalar_subquery()
        conn.execute(
            update(calls).where(calls.c.id.in_(call_ids)).values(negotiation_rounds=remaining)
        )
    return len(deleted)
