"""The schema as SQLAlchemy models. Alembic owns the DDL; ``alembic check`` keeps the two equal.

Four tables came from the legacy service (``loads``, ``carriers``, ``calls``, ``negotiations``,
one row per round) and keep their names and legacy columns; ``sessions``, ``pricing_profiles``
and ``idempotency_keys`` are new.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Alembic's recommended naming convention for indexes, unique and check constraints. Primary
#: and foreign keys keep the database's own names (``calls_pkey``, ``calls_load_id_fkey`` on
#: PostgreSQL; unnamed on SQLite), because the legacy schema that the first revision must
#: reproduce exactly has them unnamed.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timestamps stored naive in UTC (as the legacy tables hold them), returned aware in UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return value.replace(tzinfo=dt.UTC) if value is not None else None

    def json_result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any]:
        """The same values without the generic wrapper (rows of a JSON listing, see
        :class:`~negotiation.db.statements.HotStatement`)."""
        #: SQLite's from text; none on PostgreSQL.
        parse: Callable[[Any], Any] | None = self.impl_instance.result_processor(dialect, coltype)
        utc = dt.UTC
        from_iso = dt.datetime.fromisoformat

        def process(value: Any) -> dt.datetime | None:
            if value is None:
                return None
            if parse is None:
                return value.replace(tzinfo=utc)  # type: ignore[no-any-return]
            # SQLAlchemy's own text, "YYYY-MM-DD HH:MM:SS[.ffffff]", read aware in one step
            # (a sixth of the time); any other text as the exact processor reads it.
            if len(value) in (19, 26) and value[10] == " " and value[19:20] in ("", "."):
                try:
                    return from_iso(value + "+00:00")
                except ValueError:
                    pass
            parsed: dt.datetime = parse(value)
            return parsed.replace(tzinfo=utc)

        return process


CENT = Decimal("0.01")


class Money(TypeDecorator[Decimal]):
    """NUMERIC(12, 2); values come back as ``Decimal`` with exactly two places on every database."""

    impl = Numeric(12, 2)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)).quantize(CENT)

    def json_result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any]:
        """The JSON number of the amount the result processor gives: ``float`` of that
        ``Decimal``, for rows of a JSON listing (see
        :class:`~negotiation.db.statements.HotStatement`). A session read has a score of
        amounts, and making each a ``Decimal`` first was a tenth of its CPU time.
        """
        exact: Callable[[Any], Any] | None = self.result_processor(dialect, coltype)
        assert exact is not None

        def process(value: Any) -> float | None:
            if value is None:
                return None
            kind = type(value)
            if kind is float:
                # SQLite's REAL: the exact processor keeps "%.2f" % value; round() is the same
                # correctly rounded decimal, as a float.
                return round(float(value), 2)
            if kind is int:  # SQLite stores whole amounts as INTEGER
                return float(value)
            if kind is Decimal:  # PostgreSQL's NUMERIC(12, 2)
                return float(Decimal(value).quantize(CENT))
            amount: Decimal = exact(value)
            return float(amount)

        return process


MARKUP_PLACES = Decimal("0.000001")


class Ratio(TypeDecorator[Decimal]):
    """NUMERIC(10, 6) for a fraction such as a markup; values come back as exact ``Decimal``
    without trailing zeros (``0.1``, not ``0.100000``)."""

    impl = Numeric(10, 6)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        exact = Decimal(str(value)).quantize(MARKUP_PLACES)
        return exact.quantize(Decimal(1)) if exact == exact.to_integral() else exact.normalize()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Load(Base):
    __tablename__ = "loads"
    __table_args__ = (Index("ix_loads_status_origin", "status", "origin"),)

    load_id: Mapped[str] = mapped_column(String, primary_key=True, index=True)
    origin: Mapped[str] = mapped_column(String)
    destination: Mapped[str] = mapped_column(String)
    pickup_datetime: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    delivery_datetime: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    equipment_type: Mapped[str] = mapped_column(String)
    loadboard_rate: Mapped[Decimal] = mapped_column(Money)
    max_rate: Mapped[Decimal | None] = mapped_column(Money)
    notes: Mapped[str | None] = mapped_column(Text)
    weight: Mapped[float | None] = mapped_column(Float)
    commodity_type: Mapped[str | None] = mapped_column(String)
    num_of_pieces: Mapped[int | None] = mapped_column(Integer)
    miles: Mapped[float | None] = mapped_column(Float)
    dimensions: Mapped[str | None] = mapped_column(String)
    status: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: While ``status`` is ``booked`` by a call: that call and its agreed rate.
    booked_call_id: Mapped[int | None] = mapped_column(Integer)
    booked_rate: Mapped[Decimal | None] = mapped_column(Money)

    #: The pricing profile for this load's negotiations (a session's own profile wins).
    profile: Mapped[str | None] = mapped_column(String(64))


class LoadBooking(Base):
    """One booking or release of a load, kept as history."""

    __tablename__ = "load_bookings"
    __table_args__ = (
        Index("ix_load_bookings_load_id", "load_id"),
        Index("ix_load_bookings_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    load_id: Mapped[str] = mapped_column(ForeignKey("loads.load_id"))
    #: ``booked`` or ``released``.
    event: Mapped[str] = mapped_column(String(16))
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))
    #: The accepted round that booked the load (None: booked by PATCHing the call). Not a
    #: foreign key: purging a session deletes its rounds and keeps the load's history.
    round_id: Mapped[int | None] = mapped_column(Integer)
    rate: Mapped[Decimal | None] = mapped_column(Money)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Carrier(Base):
    __tablename__ = "carriers"

    mc_number: Mapped[str] = mapped_column(String, primary_key=True, index=True)
    company_name: Mapped[str] = mapped_column(String)
    status: Mapped[str | None] = mapped_column(String)
    address: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String)
    email: Mapped[str | None] = mapped_column(String)
    is_verified: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (
        Index("uq_calls_external_id", "external_id", unique=True),
        Index("ix_calls_load_id", "load_id"),
        # Ids are never reused, also after rows are deleted (PostgreSQL sequences never are).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, index=True)
    # Not a foreign key: calls may name carriers the broker has never recorded.
    carrier_mc_number: Mapped[str | None] = mapped_column(String)
    load_id: Mapped[str | None] = mapped_column(ForeignKey("loads.load_id"))
    external_id: Mapped[str | None] = mapped_column(String(255))
    call_start_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    call_end_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    call_duration: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(String)
    sentiment: Mapped[str | None] = mapped_column(String)
    initial_rate_offered: Mapped[Decimal | None] = mapped_column(Money)
    final_rate_agreed: Mapped[Decimal | None] = mapped_column(Money)
    negotiation_rounds: Mapped[int | None] = mapped_column(Integer)
    notes: Mapped[str | None] = mapped_column(Text)
    call_transcript: Mapped[str | None] = mapped_column(Text)
    transferred_to_rep: Mapped[bool | None] = mapped_column(Boolean)


class NegotiationRound(Base):
    """One round of a negotiation; a negotiation is all rounds of one (call_id, session_id)."""

    __tablename__ = "negotiations"
    __table_args__ = (
        Index("idx_negotiations_session_id", "session_id"),
        Index("idx_negotiations_call_session", "call_id", "session_id"),
        # Server-numbered rounds are unique per negotiation. Legacy rows (no decision) are
        # exempt: the old service stored duplicate round numbers, and adoption keeps every row.
        Index(
            "uq_negotiations_call_session_round",
            "call_id",
            "session_id",
            "round_number",
            unique=True,
            sqlite_where=text("session_id IS NOT NULL"),
            postgresql_where=text("session_id IS NOT NULL"),
        ),
        Index(
            "uq_negotiations_call_round_nosession",
            "call_id",
            "round_number",
            unique=True,
            sqlite_where=text("session_id IS NULL AND decision IS NOT NULL"),
            postgresql_where=text("session_id IS NULL AND decision IS NOT NULL"),
        ),
        Index("ix_negotiations_timestamp", "timestamp"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, index=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))
    session_id: Mapped[str | None] = mapped_column(Text)
    round_number: Mapped[int] = mapped_column(Integer)
    carrier_offer: Mapped[Decimal | None] = mapped_column(Money)
    decision: Mapped[str | None] = mapped_column(String(16))
    counter_offer: Mapped[Decimal | None] = mapped_column(Money)
    system_response: Mapped[str | None] = mapped_column(String)
    notes: Mapped[str | None] = mapped_column(Text)
    timestamp: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: The pricing profile version that decided the round, with the numbers it decided by;
    #: NULL on legacy rounds, recorded before profiles.
    profile: Mapped[str | None] = mapped_column(String(64))
    profile_version: Mapped[int | None] = mapped_column(Integer)
    round_limit: Mapped[Decimal | None] = mapped_column(Money)
    ceiling: Mapped[Decimal | None] = mapped_column(Money)


class NegotiationSession(Base):
    """A negotiation session: groups rounds across calls under a caller's or generated id."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_last_activity", "last_activity"),
        Index("ix_sessions_client_id", "client_id"),
        Index("ix_sessions_status_expires_at", "status", "expires_at"),
    )

    session_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    client_id: Mapped[str | None] = mapped_column(String(255))
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    #: ``active`` or ``closed``; ``expired`` is derived from ``expires_at`` when read.
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    ttl_seconds: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_activity: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: The pricing profile chosen at creation; it wins over the load's.
    profile: Mapped[str | None] = mapped_column(String(64))


class PricingProfile(Base):
    """One version of a pricing profile; versions are only ever added, never changed."""

    __tablename__ = "pricing_profiles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    description: Mapped[str | None] = mapped_column(Text)
    max_rounds: Mapped[int] = mapped_column(Integer)
    max_markup: Mapped[Decimal] = mapped_column(Ratio)
    #: ``linear``, ``early`` or ``late`` (see negotiation.policy).
    concession: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class IdempotencyKey(Base):
    """A stored response for an ``Idempotency-Key``, scoped to the API key that sent it."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)

    api_key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    request_hash: Mapped[str] = mapped_column(String(64))
    #: NULL while the first request is in flight.
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
