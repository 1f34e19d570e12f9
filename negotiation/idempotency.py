"""``Idempotency-Key``: a retried request gets the first response again and records nothing new.

A keyed request takes two transactions:

1. **claim** — insert the key's row (``response_status`` NULL: in flight), or find it. A
   completed row with the same request fingerprint is replayed; a different fingerprint is 422
   ``IDEMPOTENCY_KEY_REUSED``; an in-flight row is waited for (``idempotency_wait_ms``), then
   409 ``REQUEST_IN_PROGRESS``. A claim older than ``idempotency_lease_seconds`` belongs to a
   request that died (crash, kill) and is taken over.
2. **execute** — the write unit *and* the storing of its response, in one transaction: a round
   is recorded if and only if its response is stored, so a crash can lose neither half. The
   claim is re-checked under lock first, so a request whose lease was taken over records
   nothing.

Stored and replayed: the success response, and the 4xx errors the unit of work decides from the
database's state (404 ``CALL_NOT_FOUND``, 409 ``NEGOTIATION_CLOSED``, 410 ``SESSION_EXPIRED``,
409 ``SESSION_EXISTS``, ...). Not stored, so the key stays usable: errors found before the
claim (malformed or invalid requests), the key's own 409/422, and every 5xx (``DATABASE_BUSY``,
``DATABASE_UNAVAILABLE``, internal errors) — on those the claim is released.

Keys are scoped to the API key that sent them and kept ``idempotency_retention_seconds`` after
completion; expired rows are deleted a batch at a time by later claims (no background job).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, cast

from litestar import Request, Response
from litestar.enums import MediaType
from litestar.params import HeaderParameter
from litestar.serialization import encode_json
from pydantic import BaseModel
from sqlalchemy import Connection, Row, Table, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from negotiation.db import Database
from negotiation.db.errors import DatabaseBusy, DatabaseUnavailable
from negotiation.errors import ApiError, envelope
from negotiation.models import IdempotencyKey
from negotiation.responses import JsonResponse
from negotiation.settings import Settings

T = TypeVar("T")

logger = logging.getLogger("negotiation.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: Expired keys deleted per claim: bounded work per request, enough to keep up with any rate.
CLEANUP_BATCH = 100

keys = cast(Table, IdempotencyKey.__table__)

_VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")

#: The ``Idempotency-Key`` request header: 1-255 printable ASCII characters (else 422). The
#: constraints are documented here and checked by :func:`respond_once`, for a clearer message.
IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name=HEADER,
        description=(
            "Retry safely: the same key with the same body returns the first response again "
            "(header Idempotent-Replayed: true) and records nothing new. 1-255 printable "
            "ASCII characters."
        ),
        schema_extra={"minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7E]+$"},
    ),
]


@dataclass(frozen=True, slots=True)
class IdempotencySettings:
    retention: dt.timedelta
    lease: dt.timedelta
    wait_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> IdempotencySettings:
        return cls(
            dt.timedelta(seconds=settings.idempotency_retention_seconds),
            dt.timedelta(seconds=settings.idempotency_lease_seconds),
            settings.idempotency_wait_ms / 1000,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """A response as stored: status and the exact JSON bytes."""

    status: int
    body: bytes
    replayed: bool = False

    def response(self) -> Response[Any]:
        headers = {REPLAYED_HEADER: "true"} if self.replayed else {}
        return JsonResponse(
            self.body, status_code=self.status, media_type=MediaType.JSON, headers=headers
        )


@dataclass(frozen=True, slots=True)
class Claim:
    scope: str
    key: str
    method: str
    path: str
    request_hash: str
    at: dt.datetime


class _InFlight:
    """The key's first request is still running (its lease has not run out)."""


IN_FLIGHT = _InFlight()


def encode(body: BaseModel | dict[str, Any]) -> bytes:
    """The JSON bytes Litestar would send for ``body`` (a model, or a dict of its fields)."""
    return encode_json(body.model_dump(mode="json") if isinstance(body, BaseModel) else body)


def request_hash(method: str, path: str, fingerprint: Any) -> str:
    """A digest of what makes two requests "the same": method, path and the validated body."""
    canonical = json.dumps(
        [method, path, fingerprint], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def respond_once(
    request: Request[Any, Any, Any],
    db: Database,
    now: dt.datetime,
    key: str | None,
    render: Callable[[T], BaseModel | dict[str, Any]],
    *,
    alone: Callable[[], Awaitable[T]],
    unit: Callable[[Connection], T],
    fingerprint: Callable[[], Any],
    status: int = 201,
) -> Response[Any]:
    """Run a write and answer ``render(result)``; once per ``Idempotency-Key``.

    Without a key the write is ``alone()``; with one, ``unit`` runs in one transaction with
    the key's stored response (``Database.write``). ``fingerprint()`` gives the validated
    request body (plus anything else that changes the outcome), only called when there is a
    key: a reuse of the key with another one is 422.
    """
    if key is None:
        return Outcome(status, encode(render(await alone()))).response()
    if not _VALID_KEY.fullmatch(key):
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            f"{HEADER} must be 1-255 printable ASCII characters.",
            [{"key": HEADER, "source": "header", "message": "1-255 printable ASCII characters"}],
        )
    cfg: IdempotencySettings = request.app.state.idempotency
    claim = Claim(
        scope=request.state.api_key_fingerprint,
        key=key,
        method=request.method,
        path=request.url.path[:512],
        request_hash=request_hash(request.method, request.url.path, fingerprint()),
        at=now,
    )
    replay = await _claim(db, claim, cfg)
    if replay is not None:
        _name_session(request, replay)
        return replay.response()

    def render_error(exc: ApiError) -> bytes:
        return encode_json(envelope(request, exc.code, exc.message, exc.details))

    try:
        outcome = await db.write(
            _execute, unit, claim, render, render_error, status, now + cfg.retention
        )
    except ApiError:
        raise  # the claim was taken over: it is no longer ours to release
    except Exception:
        await _release(db, claim)
        raise
    return outcome.response()


async def _claim(db: Database, claim: Claim, cfg: IdempotencySettings) -> Outcome | None:
    """None once ``claim`` is ours; the stored response to replay; else 409 after the wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.wait_seconds
    delay = 0.01
    while True:
        state = await db.write(_take, claim, cfg)
        if not isinstance(state, _InFlight):
            return state
        # Poll with reads (they do not queue behind writes) until the first request is done.
        while state is IN_FLIGHT and loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
            state = await db.read(_peek, claim, cfg)
        if isinstance(state, Outcome):
            return state
        if state is IN_FLIGHT:
            raise ApiError(
                409,
                "REQUEST_IN_PROGRESS",
                f"A request with this {HEADER} is still being processed; retry shortly.",
                headers={"Retry-After": "1"},
            )
        # The first request released its claim (it failed) or its lease ran out: claim again.


def _pk(claim: Claim) -> Any:
    return (keys.c.api_key_hash == claim.scope) & (keys.c.key == claim.key)


def _row(conn: Connection, claim: Claim, *, lock: bool) -> Row[Any] | None:
    query = select(keys).where(_pk(claim))
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def _judge(row: Row[Any], claim: Claim, cfg: IdempotencySettings) -> Outcome | _InFlight | None:
    """What an existing row means for ``claim``: replay, wait, or (None) free to claim."""
    if row.expires_at <= claim.at:
        return None
    if row.request_hash != claim.request_hash:
        raise ApiError(
            422,
            "IDEMPOTENCY_KEY_REUSED",
            f"This {HEADER} was already used for a different request; use a new key.",
        )
    if row.response_status is not None:
        return Outcome(row.response_status, row.response_body.encode(), replayed=True)
    if row.created_at + cfg.lease > claim.at:
        return IN_FLIGHT
    return None


def _take(conn: Connection, claim: Claim, cfg: IdempotencySettings) -> Outcome | _InFlight | None:
    """Claim transaction: None when the key is now ours, else what :func:`_judge` says."""
    _delete_expired(conn, claim.at)
    values = {
        "api_key_hash": claim.scope,
        "key": claim.key,
        "method": claim.method,
        "path": claim.path,
        "request_hash": claim.request_hash,
        "response_status": None,
        "response_body": None,
        "created_at": claim.at,
        "expires_at": claim.at + cfg.retention,
    }
    row = _row(conn, claim, lock=True)
    if row is None:
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        inserted = conn.execute(
            dialect_insert(keys).values(values).on_conflict_do_nothing().returning(keys.c.key)
        ).first()
        if inserted is not None:
            return None
        row = _row(conn, claim, lock=True)  # a concurrent claim committed first
        assert row is not None
    verdict = _judge(row, claim, cfg)
    if verdict is None:
        # Expired, or a dead request's lease ran out: the key starts over as ours.
        conn.execute(update(keys).where(_pk(claim)).values(values))
    return verdict


def _peek(conn: Connection, claim: Claim, cfg: IdempotencySettings) -> Outcome | _InFlight | None:
    row = _row(conn, claim, lock=False)
    return None if row is None else _judge(row, claim, cfg)


def _delete_expired(conn: Connection, now: dt.datetime) -> None:
    expired = (
        select(keys.c.api_key_hash, keys.c.key).where(keys.c.expires_at <= now).limit(CLEANUP_BATCH)
    )
    if conn.dialect.name == "postgresql":
        # Rows another claim is deleting are skipped, not waited for (no lock queues, no deadlock).
        expired = expired.with_for_update(skip_locked=True)
    conn.execute(delete(keys).where(tuple_(keys.c.api_key_hash, keys.c.key).in_(expired)))


def _execute(
    conn: Connection,
    unit: Callable[[Connection], T],
    claim: Claim,
    render: Callable[[T], BaseModel | dict[str, Any]],
    render_error: Callable[[ApiError], bytes],
    status: int,
    expires_at: dt.datetime,
) -> Outcome:
    """Run ``unit`` and store its response in the key's row: one transaction, all or nothing."""
    row = _row(conn, claim, lock=True)
    if row is None or row.response_status is not None or row.created_at != claim.at:
        raise ApiError(
            409,
            "REQUEST_IN_PROGRESS",
            f"This request took longer than its {HEADER} lease and a retry took over; "
            "retry to get that request's response.",
            headers={"Retry-After": "1"},
        )
    try:
        with conn.begin_nested():  # a refused unit leaves nothing behind, the claim stays
            result = unit(conn)
        outcome = Outcome(status, encode(render(result)))
    except ApiError as exc:
        if exc.status_code >= 500:
            raise
        outcome = Outcome(exc.status_code, render_error(exc))
    conn.execute(
        update(keys)
        .where(_pk(claim))
        .values(
            response_status=outcome.status,
            response_body=outcome.body.decode(),
            expires_at=expires_at,
        )
    )
    return outcome


def _delete_claim(conn: Connection, claim: Claim) -> None:
    conn.execute(
        delete(keys).where(
            _pk(claim), keys.c.created_at == claim.at, keys.c.response_status.is_(None)
        )
    )


async def _release(db: Database, claim: Claim) -> None:
    """Give the key back after a failure that stored nothing, so a retry runs at once."""
    try:
        await db.write(_delete_claim, claim)
    except (DatabaseUnavailable, DatabaseBusy) as exc:
        logger.warning("idempotency claim not released (its lease will expire): %s", exc)


def _name_session(request: Request[Any, Any, Any], outcome: Outcome) -> None:
    """A replay names the session of the response it repeats (``X-Session-ID``)."""
    try:
        session_id = json.loads(outcome.body).get("session_id")
    except (ValueError, AttributeError):
        return
    if isinstance(session_id, str):
        request.state.session_id = session_id
