"""Liveness and database reachability."""

from __future__ import annotations

from litestar import Response, get

from negotiation import __version__
from negotiation.controllers.params import Db
from negotiation.db import DatabaseBusy, DatabaseUnavailable
from negotiation.schemas import HealthRead


@get("/health", operation_id="health", summary="Service and database health", tags=["health"])
async def health(db: Db) -> Response[HealthRead]:
    try:
        await db.ping()
    except (DatabaseUnavailable, DatabaseBusy) as exc:
        body = HealthRead(
            status="unavailable", database=str(exc) or "unreachable", version=__version__
        )
        return Response(body, status_code=503, headers={"Retry-After": "2"})
    return Response(HealthRead(status="ok", database="ok", version=__version__))
