"""The statements that record a round: hot statements, built and compiled once.

On PostgreSQL, where every statement is a round trip, a round is tried in two statements
outside a transaction (:data:`ROUND_CONTEXT`, then one of :data:`RECORD_IF_UNCHANGED`): one
reads everything the decision depends on, the other writes the round only if that still
holds, atomically. Rounds asked for at the same time share them (:data:`ROUND_CONTEXTS`,
:data:`RECORD_TOGETHER`). When other requests keep getting in between, the round is recorded in a
transaction that locks first (:data:`CALL_AND_SESSION`, :data:`CALL_LOCKED`,
:data:`TOUCH_AND_LAST_ROUND`, :data:`RECORD_AND_CLOSE`). SQLite's write transaction
(``BEGIN IMMEDIATE``) already excludes every other writer: it runs the locked path's
statements one by one, and has no data-modifying CTEs. :mod:`negotiation.recording` decides
which to run.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Integer,
    String,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal_column,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import replacement_traverse

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
_ROUND_VALUES = {c.key: bindparam(c.key, type_=c.type) for c in rounds.c if not c.primary_key}
_INSERT_ROUND = insert(rounds).values(_ROUND_VALUES)
#: The recorded round, and its profile version's number of rounds (for ``rounds_remaining``).
_RECORDED = (*rounds.c, RECORDED_MAX_ROUNDS)
RECORD = HotStatement(_INSERT_ROUND.returning(*_RECORDED))
#: A call's count of rounds with one more.
_ONE_MORE_ROUND = func.coalesce(calls.c.negotiation_rounds, 0) + 1
_COUNT_ROUND = update(calls).where(_BY_CALL, CALL_OPEN).values(negotiation_rounds=_ONE_MORE_ROUND)
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
RECORD_AND_CLOSE = {
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


ROUND_CONTEXT = {s: HotStatement(postgresql=_context_query(s)) for s in (True, False)}


_NO_OPTIONS: dict[str, Any] = {}


def _contexts_query(in_session: bool) -> Any:
    """:func:`_context_query` for several rounds at once: one row per round asked for whose
    call exists, tagged ``item`` (its position, from 1), as a LATERAL subquery per round.

    The rounds come as arrays ``b_call_ids`` and ``b_session_ids``. In the single-round query
    their ``b_call_id`` and ``b_session_id`` become references to the round's columns, as plain
    text: PostgreSQL resolves them in the subqueries nested at any depth (the load's id, the
    last round), where SQLAlchemy would not correlate them but add ``items`` to their FROM.
    """
    items = (
        func.unnest(
            bindparam("b_call_ids", type_=postgresql.ARRAY(Integer)),
            bindparam("b_session_ids", type_=postgresql.ARRAY(String)),
        )
        .table_valued("call_id", "session_id", with_ordinality="item")
        .render_derived()
        .alias("items")
    )
    item_columns = {"b_call_id": "items.call_id", "b_session_id": "items.session_id"}

    def per_item(element: Any, **_: Any) -> Any:
        if isinstance(element, BindParameter) and element.key in item_columns:
            return literal_column(item_columns[element.key], element.type)
        return None

    one = replacement_traverse(_context_query(in_session), _NO_OPTIONS, per_item)
    context = one.lateral("context")
    return select(items.c.item, context).select_from(items.join(context, true()))


#: PostgreSQL: the contexts of rounds asked for together, in one statement.
ROUND_CONTEXTS = {s: HotStatement(postgresql=_contexts_query(s)) for s in (True, False)}


def _still_open(now: Any, version: Any) -> tuple[Any, ...]:
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
    _TOUCH_SESSION.where(*_still_open(bindparam("b_now"), bindparam("b_version", type_=String)))
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


#: The session values a new session's row is inserted with (negotiation.sessions.new_session).
_NEW_SESSION_KEYS = (
    "session_id",
    "status",
    "ttl_seconds",
    "created_at",
    "last_activity",
    "expires_at",
)
_NEW_SESSION = [c for c in sessions.c if c.key in _NEW_SESSION_KEYS]
#: The values of a round of RECORD_TOGETHER, each bound as an array (``a_<key>``): its
#: position, guard, the guard's parameters, a new session's values, the round's values.
_TOGETHER_VALUES: dict[str, Any] = {
    "item": Integer(),
    "guard": String(),
    "b_now": sessions.c.expires_at.type,
    "b_expires_at": sessions.c.expires_at.type,
    "b_version": String(),
    "b_max_rounds": Integer(),
    **{f"s_{c.key}": c.type for c in _NEW_SESSION},
    **{key: param.type for key, param in _ROUND_VALUES.items()},
}

#: The values taken from a round's parameters (after its item and guard).
_GIVEN = list(_TOGETHER_VALUES)[2:]


def _together_query() -> Any:
    """PostgreSQL, one statement: the rounds of several negotiations (distinct calls and
    sessions), each recorded only if its guard holds, as :data:`RECORD_IF_UNCHANGED` records one
    counter or reject; an accept, which books a load, is recorded alone.

    The rounds come as arrays, one per value (``a_<name>``), unnested into ``b`` with their
    position (``item``). Each row's guard is its own: ``open`` (its session unchanged since
    read: :data:`_SESSION_STILL_OPEN`'s condition), ``unseen`` (its session id still unseen,
    then registered) or ``none`` (a call's own negotiation, guarded by the unique index on its
    round numbers, whose violation fails the whole statement: nothing is written). The call
    is counted (closed on a reject) only for rows whose guard held, and the round inserted only
    for calls still open. Rows come back with their ``item``.
    """
    b = select(
        func.unnest(
            *(
                bindparam(f"a_{name}", type_=postgresql.ARRAY(type_))
                for name, type_ in _TOGETHER_VALUES.items()
            )
        )
        .table_valued(*_TOGETHER_VALUES)
        .render_derived(with_types=False)
    ).cte("b")
    touched = (
        update(sessions)
        .where(
            b.c.guard == "open",
            sessions.c.session_id == b.c.session_id,
            *_still_open(b.c.b_now, b.c.b_version),
        )
        .values(last_activity=b.c.b_now, expires_at=b.c.b_expires_at)
        .returning(b.c.item)
        .cte("touched")
    )
    registered = (
        postgresql.insert(sessions)
        .from_select(
            [c.key for c in _NEW_SESSION],
            select(*(b.c[f"s_{c.key}"] for c in _NEW_SESSION)).where(b.c.guard == "unseen"),
        )
        .on_conflict_do_nothing(index_elements=[sessions.c.session_id])
        .returning(sessions.c.session_id)
        .cte("registered")
    )
    gate = union_all(
        select(touched.c.item),
        select(b.c.item).join(registered, registered.c.session_id == b.c.session_id),
        select(b.c.item).where(b.c.guard == "none"),
    ).cte("gate")
    closed = (
        update(calls)
        .where(calls.c.id == b.c.call_id, CALL_OPEN, b.c.item.in_(select(gate.c.item)))
        .values(
            negotiation_rounds=_ONE_MORE_ROUND,
            outcome=case((b.c.decision == "reject", "rejected"), else_=calls.c.outcome),
        )
        .returning(b.c.item)
        .cte("closed")
    )
    recorded = (
        insert(rounds)
        .from_select(
            list(_ROUND_VALUES),
            select(*(b.c[key] for key in _ROUND_VALUES)).where(b.c.item.in_(select(closed.c.item))),
        )
        .returning(*rounds.c)
        .cte("recorded")
    )
    return select(recorded, b.c.b_max_rounds.label(RECORDED_MAX_ROUNDS.name), b.c.item).join_from(
        recorded, b, b.c.call_id == recorded.c.call_id
    )


#: PostgreSQL: the counters and rejects of several negotiations recorded by one statement.
RECORD_TOGETHER = HotStatement(postgresql=_together_query())


def together_params(rounds_: list[tuple[int, str, dict[str, Any]]]) -> dict[str, list[Any]]:
    """:data:`RECORD_TOGETHER`'s parameters for rounds given as (item, guard, parameters of
    :data:`RECORD_IF_UNCHANGED` for that guard): one array per value, a parameter not given
    NULL."""
    rows = [
        (item, guard, *(params.get(name) for name in _GIVEN)) for item, guard, params in rounds_
    ]
    columns = zip(*rows, strict=True)
    return {
        f"a_{name}": list(values) for name, values in zip(_TOGETHER_VALUES, columns, strict=True)
    }
