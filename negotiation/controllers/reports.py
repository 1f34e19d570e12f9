"""Reports: one session's history, and totals over a period."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import FromQuery, QueryParameter

from negotiation.controllers.params import Ctx, SessionId
from negotiation.errors import ApiError, not_found
from negotiation.reports.history import session_report
from negotiation.reports.schemas import SessionReport, SummaryFilters, SummaryReport
from negotiation.reports.summary import summary_report
from negotiation.schemas import UTCDatetime

LoadIdQuery = Annotated[
    str | None, QueryParameter(min_length=1, max_length=64, description="Only this load's calls")
]
CarrierQuery = Annotated[
    str | None, QueryParameter(min_length=1, max_length=32, description="Only this carrier's calls")
]


class ReportController(Controller):
    path = "/reports"
    tags = ["reports"]

    @get(
        "/sessions/{session_id:str}",
        operation_id="getSessionReport",
        summary="One session's history: calls, loads, every round, outcome and figures",
    )
    async def session(self, session_id: SessionId, ctx: Ctx) -> SessionReport:
        report = await ctx.db.read(
            session_report, session_id, max_markup=ctx.policy.max_markup, now=ctx.now
        )
        if report is None:
            raise not_found("SESSION_NOT_FOUND", "Session", session_id)
        return report

    @get(
        "/summary",
        operation_id="getSummaryReport",
        summary="Totals over a period: acceptance, rounds to agreement, margins, outcomes",
    )
    async def summary(
        self,
        ctx: Ctx,
        since: FromQuery[UTCDatetime | None] = None,
        until: FromQuery[UTCDatetime | None] = None,
        load_id: LoadIdQuery = None,
        carrier_mc_number: CarrierQuery = None,
    ) -> SummaryReport:
        if since is not None and until is not None and since > until:
            raise ApiError(422, "VALIDATION_ERROR", "since must not be later than until.")
        filters = SummaryFilters(
            since=since, until=until, load_id=load_id, carrier_mc_number=carrier_mc_number
        )
        return await ctx.db.read(
            summary_report, filters, max_markup=ctx.policy.max_markup, now=ctx.now
        )
