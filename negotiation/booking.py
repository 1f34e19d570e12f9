"""Bookings: a load is booked once, by one call; a call ends once.

An accepted round (or a call PATCHed to ``accepted`` with a rate) books the call's load in the
same transaction: the load becomes ``booked`` with ``booked_call_id`` and ``booked_rate``, and a
``booked`` event is added to ``load_bookings``. ``POST /api/loads/{id}/release`` makes it
``available`` again and adds a ``released`` event. A call whose outcome is terminal (accepted,
rejected, transferred, abandoned: set by a final round, by PATCH, or by the legacy service) is
closed: no round is recorded on it any more.

What makes "at most one booking per load" hold under races: the booking statement is an
``UPDATE loads ... WHERE status is bookable``. On PostgreSQL a second booking waits for the
first one's row lock and then re-checks the condition on the committed row, so it books nothing
(and the round that wanted it is refused); on SQLite the write transaction excludes every other
writer. Lock order everywhere: session, then load, then call (see negotiation.recording).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, literal, or_, select, true, update

from negotiation.db.statements import HotStatement
from negotiation.errors import ApiError, not_found
from negotiation.models import Money
from negotiation.queries import bookings, calls, load_by_id, loads

#: Outcomes that end a call: no further round is recorded on it.
TERMINAL_OUTCOMES = ("accepted", "rejected", "transferred", "abandoned")

#: The call has not ended (NULL: a legacy call with no outcome yet).
CALL_OPEN = or_(calls.c.outcome.is_(None), and_(*(calls.c.outcome != o for o in TERMINAL_OUTCOMES)))
#: The load may be booked (NULL: a legacy load with no status).
LOAD_BOOKABLE = or_(loads.c.status.is_(None), loads.c.status == "available")

#: The load id of the call ``b_call_id`` (never correlated to an enclosing query's ``calls``).
CALLS_LOAD_ID = (
    select(calls.c.load_id)
    .where(calls.c.id == bindparam("b_call_id"))
    .correlate(None)
    .scalar_subquery()
)
#: The load booked by a call at a rate, if it is still bookable (no row otherwise).
BOOK_LOAD = (
    update(loads)
    .where(
        loads.c.load_id == CALLS_LOAD_ID,
        LOAD_BOOKABLE,
    )
    .values(
        status="booked",
        booked_call_id=bindparam("b_call_id"),
        booked_rate=bindparam("b_agreed", type_=Money),
        updated_at=bindparam("b_now", type_=loads.c.updated_at.type),
    )
    .returning(loads.c.load_id)
)


def booking_event(booked: Any, recorded: Any) -> Any:
    """The ``booked`` event inserted once per pair of a booked load's id (``booked``) and the
    round that booked it (``recorded``): none, or one."""
    columns = ["load_id", "event", "call_id", "round_id", "rate", "created_at"]
    values = select(
        booked.c.load_id,
        literal("booked"),
        bindparam("b_call_id"),
        recorded.c.id,
        bindparam("b_agreed", type_=Money),
        bindparam("b_now", type_=bookings.c.created_at.type),
    ).select_from(booked.join(recorded, true()))
    return insert(bookings).from_select(columns, values)


_BOOK = HotStatement(BOOK_LOAD)
_EVENT = HotStatement(
    insert(bookings).values(
        load_id=bindparam("b_load_id"),
        event="booked",
        call_id=bindparam("b_call_id"),
        round_id=bindparam("b_round_id"),
        rate=bindparam("b_agreed", type_=Money),
        created_at=bindparam("b_now", type_=bookings.c.created_at.type),
    )
)
#: PostgreSQL: the call's load locked (row lock), before the call's own lock is taken.
LOCK_LOAD = HotStatement(
    select(loads.c.load_id).where(loads.c.load_id == CALLS_LOAD_ID).with_for_update()
)


def book(conn: Any, call_id: int, rate: Decimal, round_id: int | None, now: dt.datetime) -> None:
    """Book the call's load (already checked bookable under the transaction's locks)."""
    params = {"b_call_id": call_id, "b_agreed": rate, "b_now": now, "b_round_id": round_id}
    booked = _BOOK.first(conn, params)
    if booked is None:  # pragma: no cover - the caller checked under the same lock
        raise AssertionError(f"the load of call {call_id} was not bookable")
    _EVENT.run(conn, params | {"b_load_id": booked.load_id})


def call_closed(call_id: int, outcome: str) -> ApiError:
    return ApiError(
        409,
        "CALL_CLOSED",
        f"Call {call_id} has already ended (outcome {outcome}); start a new call",
    )


def load_booked(load_id: str, status: str, booked_call_id: int | None) -> ApiError:
    by = f" by call {booked_call_id}" if booked_call_id is not None else ""
    return ApiError(409, "LOAD_BOOKED", f"Load {load_id} is already {status}{by}")


def check_open(call: Any) -> None:
    """409 ``CALL_CLOSED`` or ``LOAD_BOOKED`` unless a round may be recorded on ``call`` (a row
    with ``id``, ``outcome``, ``load_id``, ``load_status`` and ``booked_call_id``)."""
    if call.outcome in TERMINAL_OUTCOMES:
        raise call_closed(call.id, call.outcome)
    if call.load_status not in (None, "available"):
        raise load_booked(call.load_id, call.load_status, call.booked_call_id)


_LOCKED_CALL = select(calls).where(calls.c.id == bindparam("b_call_id")).with_for_update()


def call_for_update(conn: Connection, call_id: int, values: dict[str, Any]) -> Any | None:
    """The call's row for a PATCH with ``values``; on PostgreSQL locked when the PATCH sets the
    outcome or rate (the load first when it accepts: the lock order of the round paths)."""
    if conn.dialect.name == "postgresql" and values.keys() & {"outcome", "final_rate_agreed"}:
        if values.get("outcome") == "accepted":
            LOCK_LOAD.run(conn, {"b_call_id": call_id})
        return conn.execute(_LOCKED_CALL, {"b_call_id": call_id}).first()
    return conn.execute(select(calls).where(calls.c.id == call_id)).first()


def update_outcome(conn: Connection, call: Any, values: dict[str, Any], now: dt.datetime) -> None:
    """Check a PATCH's ``outcome`` / ``final_rate_agreed`` against the call (a row from
    :func:`call_for_update`), and book the load when it accepts. Raises 409 ``CALL_CLOSED`` /
    ``LOAD_BOOKED`` or 422 ``VALIDATION_ERROR`` for a contradiction.

    A closed call keeps its outcome and agreed rate (repeating them is allowed); its notes,
    sentiment, end time, transcript and ``transferred_to_rep`` may still change.
    """
    outcome = values.get("outcome", call.outcome)
    rate = values.get("final_rate_agreed", call.final_rate_agreed)
    if call.outcome in TERMINAL_OUTCOMES:
        if outcome != call.outcome or rate != call.final_rate_agreed:
            raise ApiError(
                409,
                "CALL_CLOSED",
                f"Call {call.id} has already ended (outcome {call.outcome}); its outcome and "
                "final_rate_agreed can no longer change",
            )
        return
    if outcome == "accepted" and rate is None:
        raise ApiError(422, "VALIDATION_ERROR", "final_rate_agreed is required to accept a call.")
    if outcome not in ("accepted", "transferred") and rate is not None:
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            f"final_rate_agreed contradicts outcome {outcome}: a rate is agreed only by an "
            "accepted call (or noted on one transferred to a rep).",
        )
    if outcome == "accepted":
        load = load_by_id(conn, call.load_id) if call.load_id is not None else None
        if load is None:
            raise ApiError(409, "CALL_HAS_NO_LOAD", f"Call {call.id} has no load to book")
        if load.status not in (None, "available"):
            raise load_booked(load.load_id, load.status, load.booked_call_id)
        book(conn, call.id, rate, None, now)


def release_load(conn: Connection, load_id: str, reason: str, now: dt.datetime) -> Any:
    """Make a booked load available again and keep the release as an event; the load's row."""
    load = conn.execute(select(loads).where(loads.c.load_id == load_id).with_for_update()).first()
    if load is None:
        raise not_found("LOAD_NOT_FOUND", "Load", load_id)
    if load.status != "booked":
        raise ApiError(
            409, "LOAD_NOT_BOOKED", f"Load {load_id} is not booked (status {load.status})"
        )
    conn.execute(
        update(loads)
        .where(loads.c.load_id == load_id)
        .values(status="available", booked_call_id=None, booked_rate=None, updated_at=now)
    )
    conn.execute(
        insert(bookings).values(
            load_id=load_id,
            event="released",
            call_id=load.booked_call_id,
            rate=load.booked_rate,
            reason=reason,
            created_at=now,
        )
    )
    row = load_by_id(conn, load_id)
    assert row is not None
    return row


def load_detail(conn: Connection, load_id: str) -> tuple[Any, list[Any]] | None:
    """The load and its booking events, oldest first; None if there is no such load."""
    load = load_by_id(conn, load_id)
    if load is None:
        return None
    events = conn.execute(
        select(bookings).where(bookings.c.load_id == load_id).order_by(bookings.c.id)
    ).all()
    return load, list(events)
