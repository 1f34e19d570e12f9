"""The statements that record a round: hot statements, built and compiled once.

On PostgreSQL, where every statement is a round trip, a round is tried in two statements
outside a transaction (:data:`ROUND_CONTEXT`, then one of :data:`RECORD_IF_UNCHANGED`): one
reads everything the decision depends on, the other writes the round only if that still
holds, atomically (rounds asked for at the same time share them:
:mod:`negotiation.round_batches`). When other requests keep getting in between, the round is
recorded in a transaction that locks first (:data:`CALL_AND_SESSION`, :data:`CALL_LOCKED`,
:data:`TOUCH_AND_LAST_ROUND`, :data:`RECORD_AND_CLOSE`). SQLite's write transaction
(``BEGIN IMMEDIATE``) already excludes every other writer: it runs the locked path's
statements one by one, and has no data-modifying CTEs. :mod:`negotiation.recording` decides
which to run.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
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

from negotiation.booking import BOOK_LOAD, CALL_OPEN, CALLS_LOAD_ID, booking_event
from negotiation.db import HotStatement
from negotiation.models import Money
from negotiation.queries import calls, loads, rounds, session_match, sessions
from negotiation.round_profiles import (
    LOAD_PROFILE,
    RECORDED_MAX_ROUNDS,
    ROUND_PROFILE,
    with_profile_version,
)
from negotiation.sessions import LOCKED_SESSION, SESSION_FOR_ROUND

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
CALL_LOCKED = HotStatement(_CALL_QUERY.where(_BY_CALL).with_for_update(of=calls))
CALL = HotStatement(_CALL_QUERY.where(_BY_CALL))
#: The call and its session's row (NULL columns when there is none), locked on PostgreSQL.
CALL_AND_SESSION = HotStatement(
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
LAST_ROUND = {k: HotStatement(q) for k, q in _LAST_ROUND_QUERY.items()}
_TOUCH_SESSION = (
    update(sessions)
    .where(sessions.c.session_id == bindparam("b_session_id"))
    .values(last_activity=bindparam("b_now"), expires_at=bindparam("b_expires_at"))
)
TOUCH = HotStatement(_TOUCH_SESSION)
#: PostgreSQL: the activity recorded and the last round read in one statement. Its snapshot
#: starts after the session's lock was taken, so it sees every round that an earlier holder of
#: the lock committed.
TOUCH_AND_LAST_ROUND = HotStatement(
    postgresql=_LAST_ROUND_QUERY[True].add_cte(_TOUCH_SESSION.cte("touched"))
)
#: A round's values, bound by column name: every column but the id, which the database assigns.
ROUND_VALUES = {c.key: bindparam(c.key, type_=c.type) for c in rounds.c if not c.primary_key}
_INSERT_ROUND = insert(rounds).values(ROUND_VALUES)
#: The recorded round, and its profile version's number of rounds (for ``rounds_remaining``).
_RECORDED = (*rounds.c, RECORDED_MAX_ROUNDS)
RECORD = HotStatement(_INSERT_ROUND.returning(*_RECORDED))
#: A call's count of rounds with one more.
ONE_MORE_ROUND = func.coalesce(calls.c.negotiation_rounds, 0) + 1
_COUNT_ROUND = update(calls).where(_BY_CALL, CALL_OPEN).values(negotiation_rounds=ONE_MORE_ROUND)
_CLOSE_CALL_QUERY = {
    "accept": _COUNT_ROUND.values(
        outcome="accepted", final_rate_agreed=bindparam("b_agreed", type_=Money)
    ),
    "reject": _COUNT_ROUND.values(outcome="rejected"),
    "counter": _COUNT_ROUND,
}
CLOSE_CALL = {decision: HotStatement(close) for decision, close in _CLOSE_CALL_QUERY.items()}


def _round_inserted_for(source: Any) -> Any:
    """The round inserted (a ``recorded`` CTE) once per row of ``source``: none, or one."""
    return (
        insert(rounds)
        .from_select(list(ROUND_VALUES), select(*ROUND_VALUES.values()).select_from(source))
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
RECORD_AND_CLOSE = {
    decision: HotStatement(postgresql=_chained_record(None, decision))
    for decision in _CLOSE_CALL_QUERY
}


#: PostgreSQL: the session row's version (the transaction that last wrote it); every round
#: recorded in the session changes it.
_SESSION_VERSION: Any = literal_column("sessions.xmin::text").label("version")


def context_query(in_session: bool) -> Any:
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


ROUND_CONTEXT = {s: HotStatement(postgresql=context_query(s)) for s in (True, False)}


def still_open(now: Any, version: Any) -> tuple[Any, ...]:
    """The session row is open at ``now`` and still the ``version`` that was read."""
    return (
        sessions.c.status == "active",
        sessions.c.expires_at > now,
        literal_column("sessions.xmin::text") == version,
    )


#: The guards of an unlocked round: the session is still open and unchanged since it was read
#: (and its activity is recorded), or an unseen session id is still unseen (and is registered).
#: Either yields no row otherwise. "Unchanged": a round recorded meanwhile on another call of
#: the load would hold this round's number, which no unique index sees across calls.
_SESSION_STILL_OPEN = (
    _TOUCH_SESSION.where(*still_open(bindparam("b_now"), bindparam("b_version", type_=String)))
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
RECORD_IF_UNCHANGED = {
    (guard, decision): HotStatement(postgresql=_chained_record(cte, decision))
    for guard, cte in (("open", _SESSION_STILL_OPEN), ("unseen", _SESSION_STILL_UNSEEN))
    for decision in _CLOSE_CALL_QUERY
} | {("none", decision): statement for decision, statement in RECORD_AND_CLOSE.items()}
