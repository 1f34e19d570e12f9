"""Recording a negotiation round: the policy's decision on an offer, written as the next round.

:func:`record_offer` records the round of ``POST /api/calls/{id}/negotiate`` (and of
:func:`negotiation.api.handle_negotiation`, and MCP's ``record_offer``); :func:`record_round`
is the same as a unit inside another write (with an ``Idempotency-Key``). They raise
:class:`~negotiation.errors.ApiError` for anything the client can fix, and nothing is ever
half-written.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from negotiation.booking import (
    BOOK_LOAD,
    CALL_OPEN,
    CALLS_LOAD_ID,
    LOCK_LOAD,
    book,
    booking_event,
)
from negotiation.db import Conn, Database, DriverConnection, HotStatement
from negotiation.models import Money
from negotiation.next_round import Offer, PolicySettings, checked_call, next_round
from negotiation.queries import calls, loads, rounds, session_match, sessions
from negotiation.round_profiles import (
    LOAD_PROFILE,
    RECORDED_MAX_ROUNDS,
    ROUND_PROFILE,
    locked_profile,
    profile_of,
    with_profile_version,
)
from negotiation.sessions import (
    LOCKED_SESSION,
    SESSION_FOR_ROUND,
    check_session_id,
    check_session_open,
    new_session,
    session_for_round,
)

__all__ = ["Offer", "PolicySettings", "record_offer", "record_round", "round_in_transaction"]

# The round-recording path runs for every offer: its statements are hot statements (built and
# compiled once, run on the driver; see negotiation.db.statements). On PostgreSQL, where every
# statement is a round trip to the server, a round is first tried in two statements outside a
# transaction (_record_unlocked): one reads everything the decision depends on, the other
# writes the round only if that still holds, atomically. When another request got in between
# (a rare event: a call's offers come one at a time), the round is recorded again in a
# transaction that locks first (_record_locked): BEGIN, the call with its session's row
# locked, the session's activity with the last round, the new round with the call's counters,
# COMMIT. SQLite has no data-modifying CTEs and no round trips, and its write transaction
# (BEGIN IMMEDIATE) already excludes every other writer: it runs the locked path's statements
# one by one.
#: The call and what decides whether it takes a round: its outcome, its load's booking.
_CALL_COLUMNS = (
    calls.c.id,
    calls.c.load_id,
    loads.c.loadboard_rate,
    loads.c.max_rate,
    calls.c.outcome,
    loads.c.status.label("load_status"),
    loads.c.booked_call_id,
    LOAD_PROFILE,
)
_CALL_WITH_LOAD = calls.outerjoin(loads, loads.c.load_id == calls.c.load_id)
_CALL_QUERY = select(*_CALL_COLUMNS).select_from(_CALL_WITH_LOAD)
_BY_CALL = calls.c.id == bindparam("b_call_id")
#: PostgreSQL serialises the rounds of a call's default negotiation with a row lock on the call.
_CALL_LOCKED = HotStatement(_CALL_QUERY.where(_BY_CALL).with_for_update(of=calls))
_CALL = HotStatement(_CALL_QUERY.where(_BY_CALL))
#: The call and its session's row (NULL columns when there is none), locked on PostgreSQL.
_CALL_AND_SESSION = HotStatement(
    select(*_CALL_COLUMNS, *LOCKED_SESSION.c)
    .select_from(_CALL_WITH_LOAD.outerjoin(LOCKED_SESSION, true()))
    .where(_BY_CALL)
)
_LAST_COLUMNS = (rounds.c.round_number, rounds.c.decision, rounds.c.counter_offer, *ROUND_PROFILE)
_LAST_FIRST = (rounds.c.round_number.desc(), rounds.c.id.desc())
#: A session's negotiation is about a load: its rounds on every call of the call's load (a
#: session resumed on a new call after a dropped one goes on where it stopped). A call's
#: default negotiation (no session) is its own rounds.
_ROUND_CALL = calls.alias("round_call")
_LAST_ROUND_QUERY = {
    True: select(*_LAST_COLUMNS)
    .select_from(rounds.join(_ROUND_CALL, _ROUND_CALL.c.id == rounds.c.call_id))
    .where(
        rounds.c.session_id == bindparam("b_session_id"),
        _ROUND_CALL.c.load_id == CALLS_LOAD_ID,
    )
    .order_by(*_LAST_FIRST)
    .limit(1),
    False: select(*_LAST_COLUMNS)
    .where(rounds.c.call_id == bindparam("b_call_id"), session_match(None))
    .order_by(*_LAST_FIRST)
    .limit(1),
}
_LAST_ROUND = {k: HotStatement(q) for k, q in _LAST_ROUND_QUERY.items()}
_TOUCH_SESSION = (
    update(sessions)
    .where(sessions.c.session_id == bindparam("b_session_id"))
    .values(last_activity=bindparam("b_now"), expires_at=bindparam("b_expires_at"))
)
_TOUCH = HotStatement(_TOUCH_SESSION)
#: PostgreSQL: the activity recorded and the last round read in one statement. Its snapshot
#: starts after the session's lock was taken, so it sees every round that an earlier holder of
#: the lock committed.
_TOUCH_AND_LAST_ROUND = HotStatement(
    postgresql=_LAST_ROUND_QUERY[True].add_cte(_TOUCH_SESSION.cte("touched"))
)
#: A round's values, bound by column name: every column but the id, which the database assigns.
_ROUND_VALUES = {c.key: bindparam(c.key, type_=c.type) for c in rounds.c if not c.primary_key}
_INSERT_ROUND = insert(rounds).values(_ROUND_VALUES)
#: The recorded round, and its profile version's number of rounds (for ``rounds_remaining``).
_RECORDED = (*rounds.c, RECORDED_MAX_ROUNDS)
_RECORD = HotStatement(_INSERT_ROUND.returning(*_RECORDED))
_COUNT_ROUND = (
    update(calls)
    .where(_BY_CALL, CALL_OPEN)
    .values(negotiation_rounds=func.coalesce(calls.c.negotiation_rounds, 0) + 1)
)
_CLOSE_CALL_QUERY = {
    "accept": _COUNT_ROUND.values(
        outcome="accepted", final_rate_agreed=bindparam("b_agreed", type_=Money)
    ),
    "reject": _COUNT_ROUND.values(outcome="rejected"),
    "counter": _COUNT_ROUND,
}
_CLOSE_CALL = {decision: HotStatement(close) for decision, close in _CLOSE_CALL_QUERY.items()}


def _round_inserted_for(source: Any) -> Any:
    """The round inserted (a ``recorded`` CTE) once per row of ``source``: none, or one."""
    return (
        insert(rounds)
        .from_select(list(_ROUND_VALUES), select(*_ROUND_VALUES.values()).select_from(source))
        .returning(*_RECORDED)
        .cte("recorded")
    )


def _chained_record(guard: Any | None, decision: str) -> Any:
    """PostgreSQL, one statement: the round recorded only if ``guard`` (a CTE; None: no guard)
    yields a row, the call is still open and, for an accept, the load is still bookable.

    Each step reads the one before it, which fixes their order and so the lock order: the
    session (the guard), the load (booking it), the call (its counters: locked before the
    round's number is taken, as on the locked path; a round that took the number first and
    then waited for the call's lock deadlocked with the holder inserting the same number), then
    the round. An update that waits for a row lock re-checks its condition on the row the
    holder committed: a booked load or a closed call stops the chain, and nothing is written.
    """
    gate = guard
    booked = None
    if decision == "accept":
        book_load = BOOK_LOAD if guard is None else BOOK_LOAD.where(exists().select_from(guard))
        gate = booked = book_load.cte("booked")
    close = _CLOSE_CALL_QUERY[decision]
    if gate is not None:
        close = close.where(exists().select_from(gate))
    recorded = _round_inserted_for(close.returning(calls.c.id).cte("closed"))
    statement = select(recorded)
    if booked is not None:
        statement = statement.add_cte(booking_event(booked, recorded).cte("event"))
    return statement


#: PostgreSQL: a round whose negotiation is already locked (and the default negotiation's
#: unlocked attempt, which the unique index on its round numbers guards).
_RECORD_AND_CLOSE = {
    decision: HotStatement(postgresql=_chained_record(None, decision))
    for decision in _CLOSE_CALL_QUERY
}


#: PostgreSQL: the session row's version (the transaction that last wrote it); every round
#: recorded in the session changes it.
_SESSION_VERSION: Any = literal_column("sessions.xmin::text").label("version")


def _context_query(in_session: bool) -> Any:
    """PostgreSQL, no lock: the call, its session's row (NULL columns when there is none) and
    the negotiation's last round (NULL columns before the first), in one statement."""
    last = _LAST_ROUND_QUERY[in_session].subquery("last_round")
    columns = [*_CALL_COLUMNS, *last.c]
    joined = _CALL_WITH_LOAD.outerjoin(last, true())
    session_profile: Any = None
    if in_session:
        session = (
            select(*SESSION_FOR_ROUND, _SESSION_VERSION)
            .where(sessions.c.session_id == bindparam("b_session_id"))
            .subquery("session")
        )
        columns += session.c
        joined = joined.outerjoin(session, true())
        session_profile = session.c.session_profile
    joined, profile_columns = with_profile_version(joined, last, session_profile)
    return select(*columns, *profile_columns).select_from(joined).where(_BY_CALL)


_ROUND_CONTEXT = {s: HotStatement(postgresql=_context_query(s)) for s in (True, False)}
#: The guards of an unlocked round: the session is still open and unchanged since it was read
#: (and its activity is recorded), or an unseen session id is still unseen (and is registered).
#: Either yields no row otherwise. "Unchanged": a round recorded meanwhile on another call of
#: the load would hold this round's number, which no unique index sees across calls.
_SESSION_STILL_OPEN = (
    _TOUCH_SESSION.where(
        sessions.c.status == "active",
        sessions.c.expires_at > bindparam("b_now"),
        literal_column("sessions.xmin::text") == bindparam("b_version", type_=String),
    )
    .returning(sessions.c.session_id)
    .cte("touched")
)
_SESSION_STILL_UNSEEN = (
    postgresql.insert(sessions)
    .values({c.key: bindparam(f"s_{c.key}", type_=c.type) for c in sessions.c})
    .on_conflict_do_nothing(index_elements=[sessions.c.session_id])
    .returning(sessions.c.session_id)
    .cte("registered")
)


#: PostgreSQL, one statement each: the round recorded if the negotiation is where it was read
#: (by the session's guard; with no session, the call's: a round recorded meanwhile holds this
#: round's number, so the unique index refuses the insert).
_RECORD_IF_UNCHANGED = {
    (guard, decision): HotStatement(postgresql=_chained_record(cte, decision))
    for guard, cte in (("open", _SESSION_STILL_OPEN), ("unseen", _SESSION_STILL_UNSEEN))
    for decision in _CLOSE_CALL_QUERY
} | {("none", decision): statement for decision, statement in _RECORD_AND_CLOSE.items()}


def _last_round(
    conn: Conn,
    call_id: int,
    session_id: str | None,
    *,
    now: dt.datetime,
    expires_at: dt.datetime | None,
) -> Any | None:
    """The negotiation's last round; records the session's activity when ``expires_at`` is set."""
    params = {"b_call_id": call_id, "b_session_id": session_id}
    if expires_at is None:
        return _LAST_ROUND[session_id is not None].first(conn, params)
    touch = params | {"b_now": now, "b_expires_at": expires_at}
    if conn.dialect.name == "postgresql":
        return _TOUCH_AND_LAST_ROUND.first(conn, touch)
    _TOUCH.run(conn, touch)  # SQLite has no UPDATE in a WITH
    return _LAST_ROUND[True].first(conn, params)


def _record(conn: Conn, values: dict[str, Any], o: Offer) -> Any:
    """Insert the round and count it on the call (closing the call on a final decision, and
    booking its load on an accept), under the locks the caller holds."""
    params = {"b_call_id": o.call_id, "b_agreed": o.offer, "b_now": o.now}
    if conn.dialect.name == "postgresql":
        row = _RECORD_AND_CLOSE[values["decision"]].first(conn, values | params)
        assert row is not None, "the call and load were checked under their locks"
        return row
    row = _RECORD.first(conn, values)
    assert row is not None
    _CLOSE_CALL[values["decision"]].run(conn, params)
    if values["decision"] == "accept":
        book(conn, o.call_id, o.offer, row.id, o.now)
    return row


def record_round(
    conn: Connection,
    *,
    call_id: int,
    offer: Decimal,
    session_id: str | None,
    notes: str | None,
    cfg: PolicySettings,
    now: dt.datetime,
) -> Any:
    """:func:`round_in_transaction` of the offer given by its fields."""
    return round_in_transaction(conn, Offer(call_id, offer, session_id, notes, cfg, now))


def round_in_transaction(conn: Conn, o: Offer) -> Any:
    """Decide on offer ``o`` and record it as the next round of the (call, session)
    negotiation, in the caller's write transaction (``Database.write`` or ``write_hot``).

    Round numbers are the server's. Concurrent requests for one negotiation are serialised: on
    PostgreSQL by a row lock on its session (or on the call, for the call's default
    negotiation), on SQLite by the write lock ``BEGIN IMMEDIATE`` takes.
    """
    check_session_id(o.session_id)
    return _record_locked(conn, o)


async def record_offer(db: Database, o: Offer) -> Any:
    """:func:`round_in_transaction` as a unit of work of its own; on PostgreSQL first tried
    without locks (:func:`_record_unlocked`), so an uncontended round is two statements."""
    return await db.write_hot(round_in_transaction, o, first_try=_first_try)


def _first_try(conn: DriverConnection, o: Offer) -> Any | None:
    check_session_id(o.session_id)
    return _record_unlocked(conn, o)


def _record_unlocked(conn: DriverConnection, o: Offer) -> Any | None:
    """PostgreSQL, outside a transaction: the round in two statements; None if another
    request changed the negotiation in between (or an unseen session must be looked up).

    The first reads the call, the session and the last round; the second records the round
    only if the session is still open (or still unseen) and the round's number still free, in
    one atomic statement, committed when it returns. A refusal (an error for the client) from
    the first needs no lock: it would have been the same a moment later.
    """
    context = checked_call(
        _ROUND_CONTEXT[o.session_id is not None].first(
            conn, {"b_call_id": o.call_id, "b_session_id": o.session_id}
        ),
        o.call_id,
    )
    guard = "none"
    params: dict[str, Any] = {
        "b_call_id": o.call_id,
        "b_session_id": o.session_id,
        "b_agreed": o.offer,
        "b_now": o.now,
    }
    if o.session_id is not None:
        if context.status is None:  # no session row: an unseen id, registered with the round
            if o.cfg.require_sessions:
                return None  # accepted only if rounds used it already: the locked path looks
            guard = "unseen"
            registered = new_session(o.session_id, o.cfg.session_ttl_seconds, o.now)
            params |= {f"s_{key}": value for key, value in registered.items()}
        else:
            guard = "open"
            expires_at = check_session_open(o.session_id, context, o.now)
            params |= {"b_expires_at": expires_at, "b_version": context.version}
    profile = profile_of(context)
    if profile is None:
        return None  # standard not recorded yet: the locked path records it
    last = context if context.round_number is not None else None
    values = next_round(context, last, o, profile)
    try:
        return _RECORD_IF_UNCHANGED[guard, values["decision"]].first(conn, values | params)
    except IntegrityError:
        return None  # a round recorded meanwhile took this round's number


def _record_locked(conn: Conn, o: Offer) -> Any:
    """The round in a transaction that first locks what it depends on (PostgreSQL: the
    session, the load, the call, in that order; on SQLite the transaction already holds the
    database's write lock)."""
    params = {"b_call_id": o.call_id, "b_session_id": o.session_id}
    session = None
    if o.session_id is not None:
        # Takes the session's lock (see negotiation.sessions).
        session = checked_call(_CALL_AND_SESSION.first(conn, params), o.call_id)
    if conn.dialect.name == "postgresql":
        LOCK_LOAD.run(conn, params)
        call = _CALL_LOCKED.first(conn, params)
    else:
        call = session if session is not None else _CALL.first(conn, params)
    call = checked_call(call, o.call_id)
    expires_at = None
    if session is not None:
        assert o.session_id is not None
        expires_at = session_for_round(
            conn,
            o.session_id,
            session if session.status is not None else None,  # a session's status is never NULL
            ttl=o.cfg.session_ttl_seconds,
            require=o.cfg.require_sessions,
            now=o.now,
        )
    last = _last_round(conn, o.call_id, o.session_id, now=o.now, expires_at=expires_at)
    cfg = o.cfg
    # The session's row carries the session's profile (and the load's, as the call's row does).
    decided_by = session if session is not None else call
    profile = locked_profile(conn, decided_by, last, cfg.max_rounds, cfg.max_markup, o.now)
    return _record(conn, next_round(call, last, o, profile), o)
