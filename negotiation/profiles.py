"""Pricing profiles: named negotiation styles, kept as immutable versions.

A profile's versions are rows of ``pricing_profiles`` (name, version); creating a profile
records version 1 and every change records the next version, so a round can always point at the
numbers that decided it. ``standard`` is the settings (``MAX_ROUNDS``, ``MAX_MARKUP``, linear):
:func:`ensure_standard` records a new version of it whenever the settings differ from its
latest one (at every start of the service).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from negotiation import policy
from negotiation.db import Database
from negotiation.db.errors import DatabaseBusy, DatabaseUnavailable
from negotiation.db.statements import Conn, HotStatement
from negotiation.errors import ApiError, not_found
from negotiation.models import MARKUP_PLACES
from negotiation.profile_names import STANDARD
from negotiation.profile_schemas import ProfileCreate, ProfileRead, ProfileUpdate
from negotiation.queries import profiles
from negotiation.settings import Settings

logger = logging.getLogger("negotiation.profiles")

_LATEST_QUERY = (
    select(profiles)
    .where(profiles.c.name == bindparam("b_name"))
    .order_by(profiles.c.version.desc())
    .limit(1)
)
_LATEST = HotStatement(_LATEST_QUERY)
_INSERT_VERSION = HotStatement(
    column_keys=[c.key for c in profiles.c],
    postgresql=postgresql.insert(profiles).on_conflict_do_nothing().returning(*profiles.c),
    sqlite=sqlite.insert(profiles).on_conflict_do_nothing().returning(*profiles.c),
)


def profile_view(row: Any) -> dict[str, Any]:
    """A ``pricing_profiles`` row as the API shows it."""
    return {key: getattr(row, key) for key in ProfileRead.model_fields}


def policy_profile(row: Any) -> policy.Profile:
    """The version in ``row`` as the policy takes it."""
    return policy.Profile(row.name, row.version, row.max_rounds, row.max_markup, row.concession)


def current_profile(conn: Connection, name: str) -> Any | None:
    """The latest version of the profile ``name``, or None when there is none."""
    return _LATEST.first(conn, {"b_name": name})


def profile_versions(conn: Connection, name: str) -> Sequence[Row[Any]]:
    """Every version of the profile ``name``, oldest first (empty: no such profile)."""
    return conn.execute(
        select(profiles).where(profiles.c.name == name).order_by(profiles.c.version)
    ).all()


def current_profiles(conn: Connection) -> Sequence[Row[Any]]:
    """The latest version of every profile, by name."""
    latest = (
        select(profiles.c.name, func.max(profiles.c.version).label("version"))
        .group_by(profiles.c.name)
        .subquery("latest")
    )
    return conn.execute(
        select(profiles)
        .join(
            latest,
            (latest.c.name == profiles.c.name) & (latest.c.version == profiles.c.version),
        )
        .order_by(profiles.c.name)
    ).all()


def check_profile_known(conn: Connection, name: str | None) -> None:
    """422 ``PROFILE_NOT_FOUND`` unless ``name`` is None or a profile's name."""
    if name is not None and name != STANDARD and current_profile(conn, name) is None:
        raise ApiError(
            422,
            "PROFILE_NOT_FOUND",
            f"Pricing profile {name} not found: create it with POST /api/profiles, "
            "or leave profile out to use the standard one",
        )


def _version_values(
    name: str, version: int, data: ProfileUpdate, now: dt.datetime
) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "description": data.description,
        "max_rounds": data.max_rounds,
        "max_markup": data.max_markup,
        "concession": data.concession,
        "created_at": now,
    }


def _insert_version(conn: Conn, values: dict[str, Any]) -> Any | None:
    """Insert a version; the new row, or None when (name, version) is already taken."""
    return _INSERT_VERSION.first(conn, values)


def _profile_exists(name: str) -> ApiError:
    return ApiError(409, "PROFILE_EXISTS", f"Pricing profile {name} already exists")


def create_profile(conn: Connection, data: ProfileCreate, now: dt.datetime) -> Any:
    """Record version 1 of a new profile; 409 ``PROFILE_EXISTS`` if the name is taken."""
    if data.name == STANDARD or current_profile(conn, data.name) is not None:
        raise _profile_exists(data.name)
    row = _insert_version(conn, _version_values(data.name, 1, data, now))
    if row is None:  # a concurrent request created it first
        raise _profile_exists(data.name)
    return row


#: PostgreSQL: a profile's version 1, locked: its updates take turns on this row, which every
#: profile has and which never changes (locking the latest version would let an update that
#: waited for it find a newer latest version nobody had locked).
_FIRST_LOCKED = HotStatement(
    select(profiles.c.version)
    .where(profiles.c.name == bindparam("b_name"), profiles.c.version == 1)
    .with_for_update()
)


def update_profile(conn: Connection, name: str, data: ProfileUpdate, now: dt.datetime) -> Any:
    """Record the next version of the profile ``name``; 404 ``PROFILE_NOT_FOUND`` if unknown.

    On PostgreSQL the profile's first version's row is locked first, so concurrent updates of
    one profile each get their own version number, one after the other.
    """
    if name == STANDARD:
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            "The standard profile follows the settings NEGOTIATION_MAX_ROUNDS and "
            "NEGOTIATION_MAX_MARKUP: change those, or create a profile of your own.",
        )
    if _FIRST_LOCKED.first(conn, {"b_name": name}) is None:
        raise not_found("PROFILE_NOT_FOUND", "Pricing profile", name)
    latest = current_profile(conn, name)  # read after the lock: the newest there is
    assert latest is not None
    row = _insert_version(conn, _version_values(name, latest.version + 1, data, now))
    assert row is not None  # the lock (PostgreSQL) or the write lock (SQLite) holds the number
    return row


def ensure_standard(conn: Conn, max_rounds: int, max_markup: Decimal, now: dt.datetime) -> Any:
    """The latest version of ``standard``, first recorded from the settings when it is
    missing or says otherwise (a concurrent start recording it too is harmless)."""
    max_markup = max_markup.quantize(MARKUP_PLACES)  # as the column keeps it
    latest = _LATEST.first(conn, {"b_name": STANDARD})
    settings = (max_rounds, max_markup, "linear")
    if latest is not None and (latest.max_rounds, latest.max_markup, latest.concession) == settings:
        return latest
    values = {
        "name": STANDARD,
        "version": 1 if latest is None else latest.version + 1,
        "description": "The service's settings: NEGOTIATION_MAX_ROUNDS, NEGOTIATION_MAX_MARKUP.",
        "max_rounds": max_rounds,
        "max_markup": max_markup,
        "concession": "linear",
        "created_at": now,
    }
    # None: a concurrent start recorded this version first; take the latest as it is now.
    return _insert_version(conn, values) or _LATEST.first(conn, {"b_name": STANDARD})


async def record_standard_profile(db: Database, settings: Settings) -> None:
    """At start: ``standard`` recorded as the settings say, unless the database is not ready
    (then the first round records it, from these settings, when it finds none)."""
    try:
        await db.write(
            ensure_standard, settings.max_rounds, settings.max_markup, dt.datetime.now(dt.UTC)
        )
    except (DatabaseUnavailable, DatabaseBusy, SQLAlchemyError) as exc:
        logger.warning("the standard pricing profile was not recorded at start: %s", exc)
