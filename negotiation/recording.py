"""Recording a negotiation round: the policy's decision on an offer, written as the next round.

:func:`record_round` is the write unit of ``POST /api/calls/{id}/negotiate`` (and of
:func:`negotiation.api.handle_negotiation`); it raises :class:`~negotiation.errors.ApiError` for
anything the client can fix, and nothing is ever half-written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, exists, func, insert, select, true, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from negotiation import policy
from negotiation.errors import ApiError, not_found
from negotiation.models import Money
from negotiation.queries import calls, loads, rounds, session_match, sessions
from negotiation.sessions import (
    LOCKED_SESSION,
    check_session_id,
    check_session_open,
    new_session,
    session_for_round,
)
from negotiation.settings import Settings
from negotiation.statements import DriverConnection, HotStatement
from negotiation.units import hot_unit, own_transaction


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The settings a negotiation round depends on."""

    max_rounds: int
    max_markup: Decimal
    session_ttl_seconds: int
    require_sessions: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicySettings:
        return cls(
            settings.max_rounds,
            settings.max_markup,
            settings.session_ttl_seconds,
            settings.require_sessions,
        )


# The round-recording path runs for every offer: its statements are hot statements (built and
# compiled once, run on the driver; see negotiation.statements). On PostgreSQL, where every
# statement is a round trip to the server, a round is first tried in two statements outside a
# transaction (_record_unlocked): one reads everything the decision depends on, the other
# writes the round only if that still holds, atomically. When another request got in between
# (a rare event: a call's offers come one at a time), the round is recorded again in a
# transaction that locks first (_record_locked): BEGIN, the call with its session's row
# locked, the session's activity with the last round, the new round with the call's counters,
# COMMIT. SQLite has no data-modifying CTEs and no round trips, and its write transaction
# (BEGIN IMMEDIATE) already excludes every other writer: it runs the locked path's statements
# one by one.
_CALL_COLUMNS = (calls.c.id, calls.c.load_id, loads.c.loadboard_rate, loads.c.max_rate)
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
_LAST_ROUND_QUERY = {
    in_session: select(rounds.c.round_number, rounds.c.decision, rounds.c.counter_offer)
    .where(
        rounds.c.call_id == bindparam("b_call_id"),
        rounds.c.session_id == bindparam("b_session_id") if in_session else session_match(None),
    )
    .order_by(rounds.c.round_number.desc(), rounds.c.id.desc())
    .limit(1)
    for in_session in (True, False)
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
_RECORD = HotStatement(_INSERT_ROUND.returning(*rounds.c))
_COUNT_ROUND = (
    update(calls)
    .where(_BY_CALL)
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
        .returning(*rounds.c)
        .cte("recorded")
    )


#: PostgreSQL: the call's counters updated and the round inserted in one statement, in that
#: order (the insert reads the update's row), so the call's row is locked before the round's
#: number is taken, as on the locked path: a round that took the number first and then waited
#: for the lock deadlocked with the lock's holder inserting the same number.
_RECORD_AND_CLOSE = {
    decision: HotStatement(
        postgresql=select(_round_inserted_for(close.returning(calls.c.id).cte("closed")))
    )
    for decision, close in _CLOSE_CALL_QUERY.items()
}


def _context_query(in_session: bool) -> Any:
    """PostgreSQL, no lock: the call, its session's row (NULL columns when there is none) and
    the negotiation's last round (NULL columns before the first), in one statement."""
    last = _LAST_ROUND_QUERY[in_session].subquery("last_round")
    columns = [*_CALL_COLUMNS, *last.c]
    joined = _CALL_WITH_LOAD.outerjoin(last, true())
    if in_session:
        session = (
            select(sessions.c.status, sessions.c.ttl_seconds, sessions.c.expires_at)
            .where(sessions.c.session_id == bindparam("b_session_id"))
            .subquery("session")
        )
        columns += session.c
        joined = joined.outerjoin(session, true())
    return select(*columns).select_from(joined).where(_BY_CALL)


_ROUND_CONTEXT = {s: HotStatement(postgresql=_context_query(s)) for s in (True, False)}
#: The guards of an unlocked round: the session is still open (and its activity is recorded),
#: or an unseen session id is still unseen (and is registered). Either yields no row otherwise.
_SESSION_STILL_OPEN = (
    _TOUCH_SESSION.where(sessions.c.status == "active", sessions.c.expires_at > bindparam("b_now"))
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


def _guarded_record(guard: Any, close: Any) -> Any:
    """The round inserted, and counted on the call, only if ``guard`` yields a row."""
    recorded = _round_inserted_for(guard)
    return select(recorded).add_cte(close.where(exists().select_from(recorded)).cte("closed"))


#: PostgreSQL, one statement each: the round recorded if the negotiation is where it was read
#: (by the session's guard; with no session, the call's). A round recorded meanwhile holds this
#: round's number, so the unique index refuses the insert.
_RECORD_IF_UNCHANGED = {
    (guard, decision): HotStatement(postgresql=_guarded_record(cte, close))
    for guard, cte in (("open", _SESSION_STILL_OPEN), ("unseen", _SESSION_STILL_UNSEEN))
    for decision, close in _CLOSE_CALL_QUERY.items()
} | {("none", decision): statement for decision, statement in _RECORD_AND_CLOSE.items()}


def _last_round(
    conn: Connection,
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


def _record(conn: Connection, values: dict[str, Any], call_id: int, agreed: Decimal) -> Any:
    """Insert the round and count it on the call (closing the call on a final decision)."""
    params = {"b_call_id": call_id, "b_agreed": agreed}
    if conn.dialect.name == "postgresql":
        return _RECORD_AND_CLOSE[values["decision"]].first(conn, values | params)
    row = _RECORD.first(conn, values)
    _CLOSE_CALL[values["decision"]].run(conn, params)
    return row


@dataclass(frozen=True, slots=True)
class _Offer:
    """One request to record a round."""

    call_id: int
    offer: Decimal
    session_id: str | None
    notes: str | None
    cfg: PolicySettings
    now: dt.datetime


def _checked_call(call: Any | None, call_id: int) -> Any:
    """The call's row, unless it is missing (404) or has no load to negotiate (409)."""
    if call is None:
        raise not_found("CALL_NOT_FOUND", "Call", call_id)
    if call.loadboard_rate is None:
        raise ApiError(
            409, "CALL_HAS_NO_LOAD", f"Call {call_id} has no load, so there is no rate to negotiate"
        )
    return call


def _next_round(call: Any, last: Any | None, o: _Offer) -> dict[str, Any]:
    """The round to record after ``last`` (None: the first), with the policy's decision."""
    cfg = o.cfg
    if last is not None and (
        last.decision in ("accept", "reject") or last.round_number >= cfg.max_rounds
    ):
        where = f" in session {o.session_id}" if o.session_id else ""
        raise ApiError(
            409,
            "NEGOTIATION_CLOSED",
            f"The negotiation for call {o.call_id}{where} already reached a final decision",
        )
    round_number = 1 if last is None else last.round_number + 1
    loadboard_rate: Decimal = call.loadboard_rate
    decision = policy.decide(
        offer=o.offer,
        loadboard_rate=loadboard_rate,
        ceiling_rate=policy.ceiling(loadboard_rate, call.max_rate, cfg.max_markup),
        round_number=round_number,
        max_rounds=cfg.max_rounds,
        previous_counter=last.counter_offer if last is not None else None,
    )
    return {
        "call_id": o.call_id,
        "session_id": o.session_id,
        "round_number": round_number,
        "carrier_offer": o.offer,
        "decision": decision.decision,
        "counter_offer": decision.counter_offer,
        "system_response": decision.message,
        "notes": o.notes,
        "timestamp": o.now,
    }


@hot_unit
@own_transaction
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
    """Decide on ``offer`` and record it as the next round of the (call, session) negotiation.

    Round numbers are the server's. Concurrent requests for one negotiation are serialised: on
    PostgreSQL by a row lock on its session (or on the call, for the call's default
    negotiation), taken only after an attempt without locks met a competing request (see
    :func:`_record_unlocked`); on SQLite by the write lock ``BEGIN IMMEDIATE`` takes.
    """
    check_session_id(session_id)
    o = _Offer(call_id, offer, session_id, notes, cfg, now)
    if isinstance(conn, DriverConnection) and conn.autocommit:
        row = _record_unlocked(conn, o)
        if row is not None:
            return row
        conn.begin()
    return _record_locked(conn, o)


def _record_unlocked(conn: DriverConnection, o: _Offer) -> Any | None:
    """PostgreSQL, outside a transaction: the round in two statements; None if another
    request changed the negotiation in between (or an unseen session must be looked up).

    The first reads the call, the session and the last round; the second records the round
    only if the session is still open (or still unseen) and the round's number still free, in
    one atomic statement, committed when it returns. A refusal (an error for the client) from
    the first needs no lock: it would have been the same a moment later.
    """
    context = _checked_call(
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
            params |= {"b_now": o.now, "b_expires_at": expires_at}
    values = _next_round(context, context if context.round_number is not None else None, o)
    try:
        return _RECORD_IF_UNCHANGED[guard, values["decision"]].first(conn, values | params)
    except IntegrityError:
        return None  # a round recorded meanwhile took this round's number


def _record_locked(conn: Connection, o: _Offer) -> Any:
    """The round in a transaction that first locks its negotiation (PostgreSQL; on SQLite the
    transaction already holds the database's write lock)."""
    if o.session_id is None:
        call_query = _CALL_LOCKED if conn.dialect.name == "postgresql" else _CALL
    else:
        call_query = _CALL_AND_SESSION  # takes the session's lock (see negotiation.sessions)
    call = _checked_call(
        call_query.first(conn, {"b_call_id": o.call_id, "b_session_id": o.session_id}),
        o.call_id,
    )
    expires_at = None
    if o.session_id is not None:
        expires_at = session_for_round(
            conn,
            o.session_id,
            call if call.status is not None else None,  # a session row's status is never NULL
            ttl=o.cfg.session_ttl_seconds,
            require=o.cfg.require_sessions,
            now=o.now,
        )
    last = _last_round(conn, o.call_id, o.session_id, now=o.now, expires_at=expires_at)
    return _record(conn, _next_round(call, last, o), o.call_id, o.offer)
