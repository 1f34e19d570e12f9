"""Recording a negotiation round: the policy's decision on an offer, written as the next round.

:func:`record_offer` records the round of ``POST /api/calls/{id}/negotiate`` (and of
:func:`negotiation.api.handle_negotiation`, and MCP's ``record_offer``); :func:`record_round`
is the same as a unit inside another write (with an ``Idempotency-Key``). They raise
:class:`~negotiation.errors.ApiError` for anything the client can fix, and nothing is ever
half-written.
"""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from negotiation.booking import LOCK_LOAD, book
from negotiation.db import Conn, Database, DriverConnection
from negotiation.errors import ApiError
from negotiation.next_round import Offer, PolicySettings, checked_call, next_round
from negotiation.round_batches import RECORD_TOGETHER, ROUND_CONTEXTS, together_params
from negotiation.round_profiles import locked_profile, profile_of
from negotiation.round_statements import (
    CALL,
    CALL_AND_SESSION,
    CALL_LOCKED,
    CLOSE_CALL,
    LAST_ROUND,
    RECORD,
    RECORD_AND_CLOSE,
    RECORD_IF_UNCHANGED,
    ROUND_CONTEXT,
    TOUCH,
    TOUCH_AND_LAST_ROUND,
)
from negotiation.sessions import (
    check_session_id,
    check_session_open,
    new_session,
    session_for_round,
)

__all__ = ["Offer", "PolicySettings", "record_offer", "record_round", "round_in_transaction"]

# On PostgreSQL a round is first tried unlocked (_record_unlocked: two statements, shared with
# the rounds asked for at the same time by record_together, tried again when another request
# got in between), then in a transaction that locks first (_record_locked); SQLite runs the
# locked path's statements in its write transaction. The statements:
# negotiation.round_statements.


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
        return LAST_ROUND[session_id is not None].first(conn, params)
    touch = params | {"b_now": now, "b_expires_at": expires_at}
    if conn.dialect.name == "postgresql":
        return TOUCH_AND_LAST_ROUND.first(conn, touch)
    TOUCH.run(conn, touch)  # SQLite has no UPDATE in a WITH
    return LAST_ROUND[True].first(conn, params)


def _record(conn: Conn, values: dict[str, Any], o: Offer) -> Any:
    """Insert the round and count it on the call (closing the call on a final decision, and
    booking its load on an accept), under the locks the caller holds."""
    params = {"b_call_id": o.call_id, "b_agreed": o.offer, "b_now": o.now}
    if conn.dialect.name == "postgresql":
        row = RECORD_AND_CLOSE[values["decision"]].first(conn, values | params)
        assert row is not None, "the call and load were checked under their locks"
        return row
    row = RECORD.first(conn, values)
    assert row is not None
    CLOSE_CALL[values["decision"]].run(conn, params)
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
    """:func:`round_in_transaction` as a unit of work of its own.

    On PostgreSQL first tried without locks, together with the other rounds asked for at the
    same time (:func:`record_together`: two statements for all of them; alone, the same two
    as :func:`_record_unlocked`), then, if another request changed its negotiation first, in a
    unit of its own: tried without locks again, then locked.
    """
    if db.is_sqlite:
        return await db.write_hot(round_in_transaction, o)
    check_session_id(o.session_id)  # before the shared unit: every item of it must be valid
    answer = await db.write_shared(record_together, o)
    if isinstance(answer, ApiError):
        raise answer
    if answer is not None:
        return answer
    first_try = functools.partial(_first_try, tries=UNLOCKED_TRIES - 1)
    return await db.write_hot(round_in_transaction, o, first_try=first_try)


def record_together(conn: DriverConnection, offers: list[Offer]) -> list[Any]:
    """PostgreSQL, for :meth:`~negotiation.db.Database.write_shared`: the offers asked for at
    the same time, each tried once without locks, as :func:`_record_unlocked` tries one.

    One statement reads every offer's context (:data:`ROUND_CONTEXTS`), one records the
    counters and rejects of distinct negotiations (:data:`RECORD_TOGETHER`); a lone offer is
    recorded by its own statement, an accept among others (it books a load) on its own
    connection afterwards. Each offer's answer is its recorded round, the :class:`ApiError`
    refusing it, or None: try it again on its own (another offer changed its negotiation
    first, a second offer on one negotiation, or only the locked path can record it).

    The unit writes with one statement at most, and a statement that fails wrote nothing: an
    error raised here leaves nothing written (the unit may run again), unless the connection
    was lost, which is never run again (``write_shared``).
    """
    contexts = round_contexts(conn, [(o.call_id, o.session_id) for o in offers])
    answers: list[Any] = [None] * len(offers)
    together: list[tuple[int, str, dict[str, Any]]] = []
    alone: list[int] = []
    negotiations: set[Any] = set()
    for i, (o, context) in enumerate(zip(offers, contexts, strict=True)):
        # A call's own negotiation and a session's are both keyed by the call: offers on one
        # call never go together (nor do two offers in one session).
        keys = {o.call_id, ("session", o.session_id)} if o.session_id else {o.call_id}
        if negotiations & keys:
            continue
        negotiations |= keys
        try:
            prepared = _prepared(o, checked_call(context, o.call_id))
        except ApiError as exc:
            answers[i] = exc
            continue
        if prepared is None:
            continue
        if prepared[1]["decision"] != "accept":
            together.append((i, *prepared))
        elif len(offers) == 1:
            alone.append(i)
        # else: an accept books a load, whose lock another call's accept may hold a while: it
        # is tried on its own connection, never holding up the rounds asked for with it.
    if len(together) == 1:
        alone.append(together.pop()[0])
    if together:
        # In call order, so that shared statements running at once take the rows' locks in one
        # order (sessions, then calls) and never wait on each other in a cycle.
        together.sort(key=lambda prepared: offers[prepared[0]].call_id)
        try:
            for row in RECORD_TOGETHER.all(conn, together_params(together)):
                answers[row.item] = row
        except IntegrityError:
            pass  # a round recorded meanwhile took one's number: nothing was written
    for i in alone:
        try:
            row = _record_unlocked(conn, offers[i], contexts[i])
        except ApiError as exc:
            row = exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise  # the statement may have committed: not tried again (503)
            row = None  # it failed whole: tried again on its own, retried or answered there
        answers[i] = None if row is _CHANGED else row
    return answers


#: A round's negotiation: (call id, session id or None).
Negotiation = tuple[int, str | None]


def round_contexts(conn: DriverConnection, negotiations: list[Negotiation]) -> list[Any | None]:
    """PostgreSQL: what each round's decision depends on (:data:`ROUND_CONTEXT`), or None when
    its call does not exist. The rounds in a session and those of a call's own negotiation are
    read by one statement each (:data:`ROUND_CONTEXTS`); a lone one by :data:`ROUND_CONTEXT`.
    """
    found: list[Any | None] = [None] * len(negotiations)
    for in_session in (True, False):
        positions = [
            i
            for i, (_, session_id) in enumerate(negotiations)
            if (session_id is not None) == in_session
        ]
        if len(positions) == 1:
            call_id, session_id = negotiations[positions[0]]
            one = {"b_call_id": call_id, "b_session_id": session_id}
            found[positions[0]] = ROUND_CONTEXT[in_session].first(conn, one)
        elif positions:
            many = {
                "b_call_ids": [negotiations[i][0] for i in positions],
                "b_session_ids": [negotiations[i][1] for i in positions],
            }
            for row in ROUND_CONTEXTS[in_session].all(conn, many):
                found[positions[row.item - 1]] = row
    return found


#: PostgreSQL: how many times a round is tried unlocked before it takes the locked path. A
#: call's three offers sent at once are recorded in turn, the last at its third try, without
#: one waiting on another's five round trips under a lock (docs/PERFORMANCE.md).
UNLOCKED_TRIES = 3
#: :func:`_record_unlocked`'s answer when another request changed the negotiation in between.
_CHANGED: Any = object()


def _first_try(conn: DriverConnection, o: Offer, *, tries: int = UNLOCKED_TRIES) -> Any | None:
    """Up to ``tries`` unlocked attempts, each on a fresh read; None: the locked path
    records the round."""
    for _ in range(tries):
        context = ROUND_CONTEXT[o.session_id is not None].first(
            conn, {"b_call_id": o.call_id, "b_session_id": o.session_id}
        )
        row = _record_unlocked(conn, o, context)
        if row is not _CHANGED:
            return row
    return None


def _record_unlocked(conn: DriverConnection, o: Offer, context: Any | None) -> Any:
    """PostgreSQL, outside a transaction: the round recorded by one atomic statement, committed
    when it returns, if the negotiation is still as ``context`` (its call, session and last
    round, read by :data:`ROUND_CONTEXT`) shows it: the session still open (or still unseen)
    and the round's number still free. :data:`_CHANGED` if another request changed the
    negotiation since (nothing was recorded: a guard's own write at most, docs/BOOKINGS.md);
    None if only the locked path can record it. A refusal (an error for the client) on the
    context needs no lock: it would have been the same a moment later.
    """
    prepared = _prepared(o, checked_call(context, o.call_id))
    if prepared is None:
        return None
    guard, params = prepared
    try:
        row = RECORD_IF_UNCHANGED[guard, params["decision"]].first(conn, params)
    except IntegrityError:
        return _CHANGED  # a round recorded meanwhile took this round's number
    return _CHANGED if row is None else row


def _prepared(o: Offer, context: Any) -> tuple[str, dict[str, Any]] | None:
    """The guard under which offer ``o`` is recorded without locks (``open``, ``unseen`` or
    ``none``) and the parameters of its statement, decided on ``context``; None if only the
    locked path can record it. Raises the :class:`ApiError` refusing the offer."""
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
    return guard, next_round(context, last, o, profile) | params


def _record_locked(conn: Conn, o: Offer) -> Any:
    """The round in a transaction that first locks what it depends on (PostgreSQL: the
    session, the load, the call, in that order; on SQLite the transaction already holds the
    database's write lock)."""
    params = {"b_call_id": o.call_id, "b_session_id": o.session_id}
    session = None
    if o.session_id is not None:
        # Takes the session's lock (see negotiation.sessions).
        session = checked_call(CALL_AND_SESSION.first(conn, params), o.call_id)
    if conn.dialect.name == "postgresql":
        LOCK_LOAD.run(conn, params)
        call = CALL_LOCKED.first(conn, params)
    else:
        call = session if session is not None else CALL.first(conn, params)
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
