"""Which pricing profile version decides a round, read with the round's other inputs.

A negotiation keeps the version it started with: its last round names it. Its first round takes
the latest version of the session's profile, else the load's, else ``standard``. On the
PostgreSQL path without locks this is joined into the statement that reads the round's context
(:func:`profile_version_of`); the locked path (and SQLite) reads it with :func:`locked_profile`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, bindparam, func, literal, select

from negotiation import policy
from negotiation.db.statements import Conn, HotStatement
from negotiation.errors import ApiError
from negotiation.profile_names import STANDARD
from negotiation.profiles import ensure_standard
from negotiation.queries import loads, profiles, rounds

_PROFILE_KEYS = ("name", "version", "max_rounds", "max_markup", "concession")
#: What a round reads of its load, of the negotiation's last round, and returns when recorded:
#: the load's profile, the profile version the negotiation started with, and the number of
#: rounds of the version that decided it (for ``rounds_remaining``).
LOAD_PROFILE = loads.c.profile.label("load_profile")
ROUND_PROFILE = (rounds.c.profile, rounds.c.profile_version)
RECORDED_MAX_ROUNDS = bindparam("b_max_rounds", type_=Integer).label("profile_max_rounds")


def profile_version_of(name: ColumnElement[Any], version: ColumnElement[Any]) -> Any:
    """``(table, join condition, p_* columns)``: version ``version`` of the profile ``name``,
    or its latest version when ``version`` is NULL (a negotiation's first round)."""
    latest = profiles.alias("latest")
    newest = select(func.max(latest.c.version)).where(latest.c.name == name).scalar_subquery()
    found = profiles.alias("profile")
    condition = and_(found.c.name == name, found.c.version == func.coalesce(version, newest))
    columns = [found.c[key].label(f"p_{key}") for key in _PROFILE_KEYS]
    return found, condition, columns


def with_profile_version(joined: Any, last: Any, session_profile: Any) -> tuple[Any, list[Any]]:
    """``joined`` (the call with its load, the last round ``last`` and the session's profile)
    with the profile version deciding the round joined on (as :func:`profile_key` picks it),
    and its ``p_*`` columns: the PostgreSQL path without locks reads it all in one statement."""
    name = func.coalesce(last.c.profile, session_profile, loads.c.profile, literal(STANDARD))
    found, condition, columns = profile_version_of(name, last.c.profile_version)
    return joined.outerjoin(found, condition), columns


_, _CONDITION, _COLUMNS = profile_version_of(
    bindparam("b_profile", type_=profiles.c.name.type),
    bindparam("b_profile_version", type_=Integer),
)
_PROFILE = HotStatement(select(*_COLUMNS).where(_CONDITION))


def profile_key(call: Any, last: Any | None) -> tuple[str, int | None]:
    """The profile (name, version) deciding the round: the negotiation's own, else the
    session's (a ``session_profile`` column), else the load's, else ``standard``; version
    None: the latest."""
    if last is not None and last.profile is not None:
        return last.profile, last.profile_version
    return getattr(call, "session_profile", None) or call.load_profile or STANDARD, None


def profile_of(row: Any) -> policy.Profile | None:
    """The ``p_*`` columns of a row as the policy's profile (None when they are NULL)."""
    if row is None or row.p_name is None:
        return None
    return policy.Profile(
        row.p_name, row.p_version, row.p_max_rounds, row.p_max_markup, row.p_concession
    )


def locked_profile(
    conn: Conn,
    call: Any,
    last: Any | None,
    max_rounds: int,
    max_markup: Decimal,
    now: dt.datetime,
) -> policy.Profile:
    """The profile version deciding the round (see :func:`profile_key`); ``standard`` is
    recorded from the settings first when no start of the service has recorded it yet."""
    name, version = profile_key(call, last)
    params = {"b_profile": name, "b_profile_version": version}
    profile = profile_of(_PROFILE.first(conn, params))
    if profile is None and name == STANDARD:
        ensure_standard(conn, max_rounds, max_markup, now)
        profile = profile_of(_PROFILE.first(conn, params))
    if profile is None:  # profiles are never deleted: only a hand-edited database gets here
        raise ApiError(
            422, "PROFILE_NOT_FOUND", f"Pricing profile {name} (version {version}) not found"
        )
    return profile
