"""Liveness and database reachability."""

from __future__ import annotations

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from negotiation import __version__
from negotiation.controllers.params import Ctx
from negotiation.db.errors import DatabaseBusy, DatabaseUnavailable
from negotiation.schemas import HealthRead


@get(
    "/health",
    operation_id="health",
    summary="Service and database health",
    tags=["health"],
    responses={
        503: ResponseSpec(
            HealthRead, description="The database cannot be reached", generate_examples=False
        )
    },
)
async def health(ctx: Ctx) -> Response[HealthRead]:
    try:
        await ctx.db.ping()
    except (DatabaseUnavailable, DatabaseBusy) as exc:
        body = HealthRead(
            status="unavailable", database=str(exc) or "unreachable", version=__version__
        )
        return Response(body, status_code=503, headers={"Retry-After": "2"})
    return Response(HealthRead(status="ok", database="ok", version=__version__))
