"""Calls, and the negotiation rounds recorded on them."""

from __future__ import annotations

from functools import partial
from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import JSONBody

from negotiation.controllers.params import (
    AfterId,
    CallId,
    Ctx,
    Limit,
    SessionIdQuery,
)
from negotiation.errors import ApiError, not_found
from negotiation.idempotency import IdempotencyKeyHeader, respond_once
from negotiation.metrics import RoundTally
from negotiation.openapi import error_responses
from negotiation.pagination import MAX_LIMIT
from negotiation.queries import call_detail, call_pages
from negotiation.recording import Offer, record_offer, round_in_transaction
from negotiation.rounds import rounds_response
from negotiation.schemas import (
    CallCreate,
    CallDetail,
    CallRead,
    CallUpdate,
    OfferCreate,
    RoundRead,
    round_json,
)
from negotiation.service import check_session_id, create_call, update_call, utcnow


class CallController(Controller):
    path = "/calls"
    tags = ["calls"]

    @post(
        operation_id="createCall",
        summary="Start a call about a load",
        responses=error_responses(404, 409),
    )
    async def create(self, data: JSONBody[CallCreate], ctx: Ctx) -> CallRead:
        return CallRead.model_validate(await ctx.db.write(create_call, data, utcnow()))

    @get("/{call_id:int}", operation_id="getCall", summary="A call with its latest decision")
    async def read(self, call_id: CallId, ctx: Ctx) -> CallDetail:
        found = await ctx.db.read_quick(call_detail, call_id)
        if found is None:
            raise not_found("CALL_NOT_FOUND", "Call", call_id)
        row, last_decision = found
        return CallDetail.model_validate(
            {**row._mapping, "last_decision": last_decision, "agreed_rate": row.final_rate_agreed}
        )

    @patch(
        "/{call_id:int}",
        operation_id="updateCall",
        summary="Record a call's outcome",
        responses=error_responses(409),  # CALL_CLOSED, LOAD_BOOKED, CALL_HAS_NO_LOAD
    )
    async def update(self, call_id: CallId, data: JSONBody[CallUpdate], ctx: Ctx) -> CallRead:
        return CallRead.model_validate(await ctx.db.write(update_call, call_id, data, ctx.now))

    @post(
        "/{call_id:int}/negotiate",
        operation_id="recordRound",
        summary="Record the carrier's offer and get the broker's decision",
        responses=error_responses(404, 409, 410),
    )
    async def negotiate(
        self,
        request: Request[Any, Any, Any],
        call_id: CallId,
        data: JSONBody[OfferCreate],
        ctx: Ctx,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[RoundRead]:
        if data.call_id is not None and str(data.call_id).strip() != str(call_id):
            raise ApiError(
                422,
                "CALL_ID_MISMATCH",
                f"call_id in the body ({data.call_id}) does not match the URL's ({call_id}).",
            )
        session_id = data.session_id if data.session_id is not None else request.state.session_id
        check_session_id(session_id)
        request.state.session_id = session_id
        offer = Offer(call_id, data.carrier_offer, session_id, data.notes, ctx.policy, ctx.now)
        render = RoundTally(lambda row: round_json(row, ctx.policy.max_rounds))
        response = await respond_once(
            request,
            ctx.db,
            ctx.now,
            idempotency_key,
            render,
            alone=partial(record_offer, ctx.db, offer),
            unit=partial(round_in_transaction, o=offer),
            fingerprint=lambda: [data.model_dump(mode="json", exclude={"call_id"}), session_id],
        )
        render.count()
        return response

    @get(
        "/{call_id:int}/negotiations",
        operation_id="listCallRounds",
        summary="Rounds of a call, oldest first",
    )
    async def rounds(
        self,
        request: Request[Any, Any, Any],
        call_id: CallId,
        ctx: Ctx,
        session_id: SessionIdQuery = None,
        limit: Limit = MAX_LIMIT,
        after_id: AfterId = None,
    ) -> Response[list[RoundRead]]:
        rows = await ctx.db.read_shared(call_pages, (call_id, session_id, after_id, limit))
        if rows is None:
            raise not_found("CALL_NOT_FOUND", "Call", call_id)
        return rounds_response(request, rows, limit, ctx.policy.max_rounds)
