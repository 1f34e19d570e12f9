"""Sessions: create (own or generated id), read with stats, list, close or purge."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromQuery, JSONBody, QueryParameter

from negotiation.controllers.params import Ctx, Cursor, Limit, SessionId
from negotiation.errors import not_found
from negotiation.idempotency import IdempotencyKeyHeader, respond_once
from negotiation.openapi import error_responses
from negotiation.schemas import (
    Page,
    SessionClosed,
    SessionCreate,
    SessionDetail,
    SessionPurged,
    SessionRead,
    SessionStatus,
    SessionSummary,
)
from negotiation.session_pages import cursor_position, page_cursor, sessions_with_round_counts
from negotiation.sessions import (
    check_session_id,
    close_session,
    create_session,
    purge_session,
    session_detail,
    session_view,
)

ClientIdQuery = Annotated[
    str | None, QueryParameter(min_length=1, max_length=255, description="Only this client's")
]


class SessionController(Controller):
    path = "/sessions"
    tags = ["sessions"]

    @post(
        operation_id="createSession",
        summary="Start a session under your own id or a new one",
        responses=error_responses(409),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        data: JSONBody[SessionCreate | None] = None,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[SessionRead]:
        data = data or SessionCreate()
        check_session_id(data.session_id)
        request.state.session_id = data.session_id

        def render(row: Any) -> SessionRead:
            request.state.session_id = row.session_id
            return SessionRead.model_validate(session_view(row, ctx.now))

        unit = partial(
            create_session, data=data, default_ttl=ctx.policy.session_ttl_seconds, now=ctx.now
        )
        return await respond_once(
            request,
            ctx.db,
            ctx.now,
            idempotency_key,
            render,
            alone=partial(ctx.db.write, unit),
            unit=unit,
            fingerprint=lambda: data.model_dump(mode="json"),
        )

    @get("/{session_id:str}", operation_id="getSession", summary="A session with its statistics")
    async def read(self, session_id: SessionId, ctx: Ctx) -> SessionDetail:
        view = await ctx.db.read(
            session_detail, session_id, default_ttl=ctx.policy.session_ttl_seconds, now=ctx.now
        )
        if view is None:
            raise not_found("SESSION_NOT_FOUND", "Session", session_id)
        return SessionDetail.model_validate(view)

    @get(operation_id="listSessions", summary="Sessions, most recent activity first")
    async def list(
        self,
        ctx: Ctx,
        status: FromQuery[SessionStatus | None] = None,
        client_id: ClientIdQuery = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> Page[SessionSummary]:
        rows, counts = await ctx.db.read(
            sessions_with_round_counts,
            status=status,
            client_id=client_id,
            after=cursor_position(cursor) if cursor else None,
            limit=limit,
            now=ctx.now,
        )
        items = [
            SessionSummary.model_validate(
                session_view(r, ctx.now) | {"round_count": counts.get(r.session_id, 0)}
            )
            for r in rows[:limit]
        ]
        return Page(items=items, next_cursor=page_cursor(rows, limit))

    @delete(
        "/{session_id:str}",
        status_code=200,
        operation_id="deleteSession",
        summary="Close a session (history kept), or purge it with all its rounds",
    )
    async def remove(
        self,
        session_id: SessionId,
        ctx: Ctx,
        purge: FromQuery[bool] = False,
    ) -> SessionClosed | SessionPurged:
        if purge:
            purged = await ctx.db.write(purge_session, session_id)
            return SessionPurged(session_id=session_id, purged_rounds=purged)
        await ctx.db.write(
            close_session, session_id, default_ttl=ctx.policy.session_ttl_seconds, now=ctx.now
        )
        return SessionClosed(session_id=session_id, status="closed")
