"""Rounds across calls: by session, and the general filtered query."""

from __future__ import annotations

from typing import Any, cast

from litestar import Controller, Request, Response, get
from litestar.params import FromQuery

from negotiation.controllers.params import (
    AfterId,
    CallIdQuery,
    Ctx,
    Cursor,
    Limit,
    SessionId,
    SessionIdQuery,
)
from negotiation.errors import not_found
from negotiation.pagination import MAX_LIMIT, decode_cursor, next_cursor
from negotiation.queries import RoundFilters, rounds_filtered, session_pages
from negotiation.rounds import rounds_response
from negotiation.schemas import DecisionKind, Page, RoundRead, UTCDatetime, round_json


class NegotiationController(Controller):
    path = "/negotiations"
    tags = ["negotiations"]

    @get(
        "/session/{session_id:str}",
        operation_id="listSessionRounds",
        summary="Rounds of a session across calls, oldest first",
    )
    async def by_session(
        self,
        request: Request[Any, Any, Any],
        session_id: SessionId,
        ctx: Ctx,
        limit: Limit = MAX_LIMIT,
        after_id: AfterId = None,
    ) -> Response[list[RoundRead]]:
        rows = await ctx.db.read_shared(session_pages, (session_id, after_id, limit))
        if rows is None:
            raise not_found("SESSION_NOT_FOUND", "Session", session_id)
        return rounds_response(request, rows, limit, ctx.policy.max_rounds)

    @get(operation_id="queryRounds", summary="Rounds by call, session, decision and time")
    async def query(
        self,
        ctx: Ctx,
        call_id: CallIdQuery = None,
        session_id: SessionIdQuery = None,
        decision: FromQuery[DecisionKind | None] = None,
        since: FromQuery[UTCDatetime | None] = None,
        until: FromQuery[UTCDatetime | None] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> Page[RoundRead]:
        filters = RoundFilters(
            call_id=call_id, session_id=session_id, decision=decision, since=since, until=until
        )
        filters["after_id"] = decode_cursor(cursor, "rounds", int) if cursor else None
        rows = await ctx.db.read_hot(rounds_filtered, filters, limit=limit)
        page = {
            "items": [round_json(r, ctx.policy.max_rounds) for r in rows[:limit]],
            "next_cursor": next_cursor(rows, limit, "rounds", lambda r: r.id),
        }
        return cast("Page[RoundRead]", page)  # encodes as the model would (test_round_views)
