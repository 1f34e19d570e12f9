"""Write units for loads and calls: each function runs inside one transaction that
:class:`~negotiation.db.Database` opens and commits. They raise
:class:`~negotiation.errors.ApiError` for anything the client can fix; the raise rolls the whole
unit back, so nothing is ever half-written. Recording a round: :mod:`negotiation.recording`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Row, insert, update
from sqlalchemy.exc import IntegrityError

from negotiation.booking import call_for_update, update_outcome
from negotiation.errors import ApiError, not_found
from negotiation.profiles import check_profile_known
from negotiation.queries import call_by_id, calls, load_by_id, loads
from negotiation.schemas import CallCreate, CallUpdate, LoadCreate
from negotiation.sessions import check_session_id as check_session_id  # re-exported


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_load(conn: Connection, data: LoadCreate, now: dt.datetime) -> Row[Any]:
    check_profile_known(conn, data.profile)
    values = data.model_dump() | {"created_at": now, "updated_at": now}
    try:
        conn.execute(insert(loads).values(values))
    except IntegrityError:
        raise ApiError(409, "LOAD_EXISTS", f"Load {data.load_id} already exists") from None
    row = load_by_id(conn, data.load_id)
    assert row is not None
    return row


def create_call(conn: Connection, data: CallCreate, now: dt.datetime) -> Row[Any]:
    load = load_by_id(conn, data.load_id)
    if load is None:
        raise not_found("LOAD_NOT_FOUND", "Load", data.load_id)
    values = {
        "load_id": data.load_id,
        "carrier_mc_number": data.carrier_mc_number,
        "external_id": data.external_id,
        "initial_rate_offered": data.initial_rate_offered or load.loadboard_rate,
        "call_start_time": data.call_start_time or now,
        "outcome": "negotiating",
        "negotiation_rounds": 0,
        "transferred_to_rep": False,
        "notes": data.notes,
    }
    try:
        call_id = conn.execute(insert(calls).values(values).returning(calls.c.id)).scalar_one()
    except IntegrityError:
        raise ApiError(
            409, "CALL_EXISTS", f"A call with external_id {data.external_id} already exists"
        ) from None
    row = call_by_id(conn, call_id)
    assert row is not None
    return row


def update_call(conn: Connection, call_id: int, data: CallUpdate, now: dt.datetime) -> Row[Any]:
    """PATCH a call. Setting ``outcome`` / ``final_rate_agreed`` follows the booking rules
    (:func:`negotiation.booking.update_outcome`): accepting books the load."""
    values = data.model_dump(exclude_unset=True)
    call = call_for_update(conn, call_id, values)
    if call is None:
        raise not_found("CALL_NOT_FOUND", "Call", call_id)
    if values.keys() & {"outcome", "final_rate_agreed"}:
        update_outcome(conn, call, values, now)
    if values.get("call_end_time") is not None:
        start = call.call_start_time
        if start is not None:
            if values["call_end_time"] < start:
                raise ApiError(
                    422, "VALIDATION_ERROR", "call_end_time must not be before call_start_time."
                )
            values["call_duration"] = int((values["call_end_time"] - start).total_seconds())
    if values:
        conn.execute(update(calls).where(calls.c.id == call_id).values(values))
    row = call_by_id(conn, call_id)
    assert row is not None
    return row
