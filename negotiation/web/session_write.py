"""Create a session row, with the semantics of the contract's ``POST /api/sessions``.

A small, self-contained write unit for the web form. The sessions API owns the same operation;
when both exist, the form should call that module's function instead (one import in
``negotiation/web/pages.py``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Row, insert, select
from sqlalchemy.exc import IntegrityError

from negotiation.errors import ApiError
from negotiation.ids import generate_session_id
from negotiation.queries import session_by_id, sessions
from negotiation.service import check_session_id


def session_exists_error(session_id: str) -> ApiError:
    """409 ``SESSION_EXISTS`` with the contract's message."""
    return ApiError(
        409,
        "SESSION_EXISTS",
        f"Session ID '{session_id}' already exists. Please use a different ID or omit it for "
        "auto-generation.",
    )


def create_session(
    conn: Connection,
    *,
    session_id: str | None,
    client_id: str | None,
    metadata: dict[str, Any] | None,
    ttl_seconds: int,
    now: dt.datetime,
) -> Row[Any]:
    """Insert an active session (a generated id when ``session_id`` is blank) and return it.

    Raises 422 ``INVALID_SESSION_ID`` for a malformed custom id, 409 ``SESSION_EXISTS`` for a
    taken one.
    """
    session_id = session_id or generate_session_id(now)
    check_session_id(session_id)
    if conn.execute(
        select(sessions.c.session_id).where(sessions.c.session_id == session_id)
    ).first():
        raise session_exists_error(session_id)
    try:
        conn.execute(
            insert(sessions).values(
                session_id=session_id,
                client_id=client_id,
                metadata=metadata,
                status="active",
                ttl_seconds=ttl_seconds,
                created_at=now,
                last_activity=now,
                expires_at=now + dt.timedelta(seconds=ttl_seconds),
            )
        )
    except IntegrityError:
        # Another request created it between the check and the insert.
        raise session_exists_error(session_id) from None
    row = session_by_id(conn, session_id)
    assert row is not None
    return row
