"""Read queries, one per access pattern, as plain Core ``select()``s over a ``Connection``."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypedDict, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Integer,
    Row,
    String,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY

from negotiation.db.statements import Conn, HotStatement
from negotiation.models import (
    Call,
    Load,
    LoadBooking,
    NegotiationRound,
    NegotiationSession,
    PricingProfile,
)

loads = cast(Table, Load.__table__)
calls = cast(Table, Call.__table__)
rounds = cast(Table, NegotiationRound.__table__)
sessions = cast(Table, NegotiationSession.__table__)
bookings = cast(Table, LoadBooking.__table__)
profiles = cast(Table, PricingProfile.__table__)

#: Rounds as the API lists them: with their profile version's number of rounds, which
#: ``rounds_remaining`` counts by (NULL for a legacy round).
ROUND_COLUMNS = (*rounds.c, profiles.c.max_rounds.label("profile_max_rounds"))
ROUNDS_WITH_PROFILE = rounds.outerjoin(
    profiles,
    and_(profiles.c.name == rounds.c.profile, profiles.c.version == rounds.c.profile_version),
)

#: Marker for "any session" in :func:`rounds_by_call` (``None`` means the call's default one).
ANY_SESSION: Any = object()


def session_match(session_id: str | None) -> ColumnElement[bool]:
    """``session_id = :id``, or ``IS NULL`` for a call's default negotiation (index-friendly)."""
    column: ColumnElement[str | None] = rounds.c.session_id
    return column.is_(None) if session_id is None else column == session_id


def load_by_id(conn: Connection, load_id: str) -> Row[Any] | None:
    return conn.execute(select(loads).where(loads.c.load_id == load_id)).first()


def loads_page(
    conn: Connection,
    *,
    origin: str | None,
    destination: str | None,
    equipment_type: str | None,
    status: str | None,
    after_load_id: str | None,
    limit: int,
    pickup_on: dt.date | None = None,
) -> Sequence[Row[Any]]:
    """Loads ordered by ``load_id``, ``limit + 1`` rows so the caller can tell if more remain;
    ``pickup_on``: only loads picked up on that UTC date."""
    query = select(loads).order_by(loads.c.load_id).limit(limit + 1)
    if pickup_on is not None:
        day = dt.datetime.combine(pickup_on, dt.time(), dt.UTC)
        query = query.where(
            loads.c.pickup_datetime >= day, loads.c.pickup_datetime < day + dt.timedelta(days=1)
        )
    for column, value in (
        (loads.c.origin, origin),
        (loads.c.destination, destination),
        (loads.c.equipment_type, equipment_type),
        (loads.c.status, status),
    ):
        if value is not None:
            query = query.where(column == value)
    if after_load_id is not None:
        query = query.where(loads.c.load_id > after_load_id)
    return conn.execute(query).all()


_CALL_WITH_LOAD_STATUS = select(calls, loads.c.status.label("load_status")).select_from(
    calls.outerjoin(loads, loads.c.load_id == calls.c.load_id)
)


def call_by_id(conn: Connection, call_id: int) -> Row[Any] | None:
    """The call, with its load's status as ``load_status``."""
    return conn.execute(_CALL_WITH_LOAD_STATUS.where(calls.c.id == call_id)).first()


_CALL_EXISTS = HotStatement(select(calls.c.id).where(calls.c.id == bindparam("b_call_id")))


def call_exists(conn: Conn, call_id: int) -> bool:
    return _CALL_EXISTS.first(conn, {"b_call_id": call_id}) is not None


def last_decision_by_call(conn: Connection, call_id: int) -> str | None:
    """The decision of the call's most recent round (None before any round, or a legacy one)."""
    return conn.execute(
        select(rounds.c.decision)
        .where(rounds.c.call_id == call_id)
        .order_by(rounds.c.id.desc())
        .limit(1)
    ).scalar()


#: Conditions of the round listings and the general query, each on a bound parameter named as
#: its key (``no_session``: a call's default negotiation, which has no session id).
_FILTERS: dict[str, ColumnElement[bool]] = {
    "call_id": rounds.c.call_id == bindparam("call_id"),
    "session_id": rounds.c.session_id == bindparam("session_id"),
    "no_session": session_match(None),
    "decision": rounds.c.decision == bindparam("decision"),
    "since": rounds.c.timestamp >= bindparam("since", type_=rounds.c.timestamp.type),
    "until": rounds.c.timestamp < bindparam("until", type_=rounds.c.timestamp.type),
    "after_id": rounds.c.id > bindparam("after_id"),
}


@functools.cache
def _rounds_page(present: tuple[str, ...]) -> HotStatement:
    """A page of rounds under the ``present`` filters, oldest first, built once per shape.

    These run on every listing and query request: hot statements (negotiation.db.statements),
    their rows made for JSON responses (money as numbers).
    """
    conditions = [_FILTERS[name] for name in present]
    query = (
        select(*ROUND_COLUMNS)
        .select_from(ROUNDS_WITH_PROFILE)
        .where(and_(True, *conditions))
        .order_by(rounds.c.id)
    )
    return HotStatement(query.limit(bindparam("b_limit")), json=True)


def _page(conn: Conn, limit: int, **filters: Any) -> Sequence[Any]:
    """``limit + 1`` rounds matching the filters given (None: not filtered on)."""
    present = tuple(name for name, value in filters.items() if value is not None)
    return _rounds_page(present).all(conn, {**filters, "b_limit": limit + 1})


def rounds_by_call(
    conn: Conn, call_id: int, session_id: Any, *, after_id: int | None, limit: int
) -> Sequence[Any]:
    """Rounds of a call, oldest first; ``session_id`` narrows to one negotiation of the call."""
    if session_id is ANY_SESSION:
        return _page(conn, limit, call_id=call_id, after_id=after_id)
    if session_id is None:
        return _page(conn, limit, call_id=call_id, no_session=True, after_id=after_id)
    return _page(conn, limit, call_id=call_id, session_id=session_id, after_id=after_id)


def rounds_by_session(
    conn: Conn, session_id: str, *, after_id: int | None, limit: int
) -> Sequence[Any]:
    """Rounds of a session across all its calls, oldest first."""
    return _page(conn, limit, session_id=session_id, after_id=after_id)


def _shared_pages(
    keys: dict[str, Any], match: Callable[[Any], ColumnElement[bool]]
) -> HotStatement:
    """One statement for many pages (PostgreSQL): for each page asked for, a LATERAL subquery
    as the single-page statement runs it, on the same index, tagged with the page's position.

    The pages come as arrays, one per key (``b_<key>s``), then ``b_after_ids`` and ``b_limits``;
    ``match(pages)`` ties a page's keys to the rounds.
    """
    arrays = [bindparam(f"b_{key}s", type_=ARRAY(type_)) for key, type_ in keys.items()]
    arrays += [
        bindparam("b_after_ids", type_=ARRAY(BigInteger)),
        bindparam("b_limits", type_=ARRAY(Integer)),
    ]
    pages = (
        func.unnest(*arrays)
        .table_valued(*keys, "after_id", "page_limit", with_ordinality="page")
        .render_derived()
        .alias("pages")
    )
    page_rounds = (
        select(rounds)
        .where(match(pages), rounds.c.id > pages.c.after_id)
        .order_by(rounds.c.id)
        .limit(pages.c.page_limit)
        .lateral("r")
    )
    # Each page's rounds are found first, then their profile versions (a join inside the
    # LATERAL made the planner walk the id index instead of the session's).
    version = and_(
        profiles.c.name == page_rounds.c.profile,
        profiles.c.version == page_rounds.c.profile_version,
    )
    return HotStatement(
        json=True,
        postgresql=select(pages.c.page, page_rounds, ROUND_COLUMNS[-1])
        .select_from(pages.join(page_rounds, true()).outerjoin(profiles, version))
        .order_by(pages.c.page, page_rounds.c.id),
    )


def _pages_of(
    conn: Conn,
    pages: list[Any],
    statement: HotStatement,
    keys: tuple[str, ...],
    one: Callable[..., Sequence[Any]],
) -> list[list[Any]]:
    """``limit + 1`` rounds for each page (keys..., after id, limit): on PostgreSQL, several by
    one ``statement``; otherwise each by ``one(conn, *keys, after_id=, limit=)``."""
    if len(pages) == 1 or conn.dialect.name != "postgresql":
        return [list(one(conn, *p[:-2], after_id=p[-2], limit=p[-1])) for p in pages]
    found: list[list[Any]] = [[] for _ in pages]
    params: dict[str, list[Any]] = {
        f"b_{key}s": [p[i] for p in pages] for i, key in enumerate(keys)
    }
    params["b_after_ids"] = [p[-2] or 0 for p in pages]  # ids start at 1
    params["b_limits"] = [p[-1] + 1 for p in pages]
    for row in statement.all(conn, params):
        found[row.page - 1].append(row)
    return found


_SESSION_PAGES = _shared_pages(
    {"session_id": String}, lambda pages: rounds.c.session_id == pages.c.session_id
)
#: A call's rounds in any of its sessions (session NULL) or in one.
_CALL_PAGES = _shared_pages(
    {"call_id": Integer, "session_id": String},
    lambda pages: and_(
        rounds.c.call_id == pages.c.call_id,
        or_(pages.c.session_id.is_(None), rounds.c.session_id == pages.c.session_id),
    ),
)

#: A page of a session's rounds asked for: (session id, rounds after this id or None, limit).
SessionPage = tuple[str, int | None, int]
#: A page of a call's rounds: (call id, session id or None for any, after id or None, limit).
CallPage = tuple[int, str | None, int | None, int]


def session_pages(conn: Conn, pages: list[SessionPage]) -> list[list[Any] | None]:
    """For each page asked for, ``limit + 1`` of the session's rounds oldest first (as
    :func:`rounds_by_session`), or None when the session does not exist.

    Made for :meth:`~negotiation.db.Database.read_shared`: on PostgreSQL, several pages are
    read by one statement.
    """
    found = _pages_of(conn, pages, _SESSION_PAGES, ("session_id",), rounds_by_session)
    return [
        rows if rows or after_id is not None or session_known(conn, session_id) else None
        for rows, (session_id, after_id, _) in zip(found, pages, strict=True)
    ]


def _rounds_of_call(
    conn: Conn, call_id: int, session_id: str | None, *, after_id: int | None, limit: int
) -> Sequence[Any]:
    return rounds_by_call(
        conn,
        call_id,
        ANY_SESSION if session_id is None else session_id,
        after_id=after_id,
        limit=limit,
    )


def call_pages(conn: Conn, pages: list[CallPage]) -> list[list[Any] | None]:
    """For each page asked for, ``limit + 1`` of the call's rounds oldest first, in one
    session or any (as :func:`rounds_by_call`), or None when the call does not exist.

    Made for :meth:`~negotiation.db.Database.read_shared`, as :func:`session_pages`.
    """
    found = _pages_of(conn, pages, _CALL_PAGES, ("call_id", "session_id"), _rounds_of_call)
    # A round's call exists (foreign key): the call is looked up only for an empty page.
    return [
        rows if rows or call_exists(conn, call_id) else None
        for rows, (call_id, *_) in zip(found, pages, strict=True)
    ]


class RoundFilters(TypedDict, total=False):
    """What the general round query filters on; a filter absent or None is not applied."""

    call_id: int | None
    session_id: str | None
    decision: str | None
    since: dt.datetime | None
    until: dt.datetime | None
    after_id: int | None


def rounds_filtered(conn: Conn, filters: RoundFilters, *, limit: int) -> Sequence[Any]:
    """The general round query: any combination of call, session, decision and time range."""
    return _page(conn, limit, **filters)


_SESSION_CREATED = HotStatement(
    select(sessions.c.session_id).where(sessions.c.session_id == bindparam("b_session_id"))
)
_SESSION_USED = HotStatement(
    select(rounds.c.id).where(rounds.c.session_id == bindparam("b_session_id")).limit(1)
)


def session_used_by_rounds(conn: Conn, session_id: str) -> bool:
    """True when a round was recorded under ``session_id``."""
    return _SESSION_USED.first(conn, {"b_session_id": session_id}) is not None


def session_known(conn: Conn, session_id: str) -> bool:
    """A session exists when it was created, or when rounds were recorded under its id."""
    if _SESSION_CREATED.first(conn, {"b_session_id": session_id}) is not None:
        return True
    return session_used_by_rounds(conn, session_id)


def call_detail(conn: Connection, call_id: int) -> tuple[Row[Any], str | None] | None:
    """The call and the decision of its latest round."""
    call = call_by_id(conn, call_id)
    if call is None:
        return None
    return call, last_decision_by_call(conn, call_id)
