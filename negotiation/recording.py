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

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from negotiation.booking import LOCK_LOAD, book
from negotiation.db import Conn, Database, DriverConnection
from negotiation.next_round import Offer, PolicySettings, checked_call, next_round
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

# On PostgreSQL a round is first tried unlocked (_record_unlocked: two statements, tried again
# when another request got in between), then in a transaction that locks first
# (_record_locked); SQLite runs the locked path's statements in its write transaction. The
# statements: negotiation.round_statements.


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
    """:func:`round_in_transaction` as a unit of work of its own; on PostgreSQL first tried
    without locks (:func:`_record_unlocked`), so an uncontended round is two statements."""
    return await db.write_hot(round_in_transaction, o, first_try=_first_try)


#: PostgreSQL: how many times a round is tried unlocked before it takes the locked path. A
#: call's three offers sent at once are recorded in turn, the last at its third try, without
#: one waiting on another's five round trips under a lock (docs/PERFORMANCE.md).
UNLOCKED_TRIES = 3
#: :func:`_record_unlocked`'s answer when another request changed the negotiation in between.
_CHANGED: Any = object()


def _first_try(conn: DriverConnection, o: Offer) -> Any | None:
    check_session_id(o.session_id)
    for _ in range(UNLOCKED_TRIES):
        row = _record_unlocked(conn, o)
        if row is not _CHANGED:
            return row
    return None


def _record_unlocked(conn: DriverConnection, o: Offer) -> Any:
    """PostgreSQL, outside a transaction: the round in two statements; :data:`_CHANGED` if
    another request changed the negotiation in between (nothing was recorded: a guard's own
    write at most, docs/BOOKINGS.md); None if only the locked path can record it.

    The first reads the call, the session and the last round; the second records the round
    only if the session is still open (or still unseen) and the round's number still free, in
    one atomic statement, committed when it returns. A refusal (an error for the client) from
    the first needs no lock: it would have been the same a moment later.
    """
    context = checked_call(
        ROUND_CONTEXT[o.session_id is not None].first(
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
        row = RECORD_IF_UNCHANGED[guard, values["decision"]].first(conn, values | params)
    except IntegrityError:
        return _CHANGED  # a round recorded meanwhile took this round's number
    return _CHANGED if row is None else row


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
