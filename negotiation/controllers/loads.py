"""Loads: create, read (with its bookings), list, release a booking."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from negotiation.booking import load_detail, release_load
from negotiation.controllers.params import Ctx, Cursor, Limit
from negotiation.errors import not_found
from negotiation.openapi import error_responses
from negotiation.pagination import decode_cursor, next_cursor
from negotiation.queries import loads_page
from negotiation.schemas import (
    BookingEvent,
    LoadCreate,
    LoadDetail,
    LoadRead,
    LoadRelease,
    LoadStatus,
    Page,
)
from negotiation.service import create_load, utcnow


async def _detail(ctx: Ctx, load_id: str) -> LoadDetail:
    found = await ctx.db.read(load_detail, load_id)
    if found is None:
        raise not_found("LOAD_NOT_FOUND", "Load", load_id)
    row, events = found
    bookings = [BookingEvent.model_validate(e) for e in events]
    return LoadDetail.model_validate({**row._mapping, "bookings": bookings})


class LoadController(Controller):
    path = "/loads"
    tags = ["loads"]

    @post(operation_id="createLoad", summary="Post a load", responses=error_responses(409))
    async def create(self, data: JSONBody[LoadCreate], ctx: Ctx) -> LoadRead:
        row = await ctx.db.write(create_load, data, utcnow())
        return LoadRead.model_validate(row)

    @get("/{load_id:str}", operation_id="getLoad", summary="One load, with its bookings")
    async def read(self, load_id: FromPath[str], ctx: Ctx) -> LoadDetail:
        return await _detail(ctx, load_id)

    @post(
        "/{load_id:str}/release",
        operation_id="releaseLoad",
        summary="Make a booked load available again",
        status_code=200,
        responses=error_responses(409),  # LOAD_NOT_BOOKED
    )
    async def release(
        self, load_id: FromPath[str], data: JSONBody[LoadRelease], ctx: Ctx
    ) -> LoadDetail:
        await ctx.db.write(release_load, load_id, data.reason, ctx.now)
        return await _detail(ctx, load_id)

    @get(operation_id="listLoads", summary="Loads, filtered, by load_id")
    async def list(
        self,
        ctx: Ctx,
        origin: FromQuery[str | None] = None,
        destination: FromQuery[str | None] = None,
        equipment_type: FromQuery[str | None] = None,
        status: FromQuery[LoadStatus | None] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> Page[LoadRead]:
        after = decode_cursor(cursor, "loads", str) if cursor else None
        rows = await ctx.db.read(
            loads_page,
            origin=origin,
            destination=destination,
            equipment_type=equipment_type,
            status=status,
            after_load_id=after,
            limit=limit,
        )
        return Page(
            items=[LoadRead.model_validate(r) for r in rows[:limit]],
            next_cursor=next_cursor(rows, limit, "loads", lambda r: r.load_id),
        )
