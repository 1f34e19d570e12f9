"""Loads: create, read, list."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from negotiation.controllers.params import Ctx, Cursor, Limit
from negotiation.errors import not_found
from negotiation.pagination import decode_cursor, next_cursor
from negotiation.queries import load_by_id, loads_page
from negotiation.schemas import LoadCreate, LoadRead, LoadStatus, Page
from negotiation.service import create_load, utcnow


class LoadController(Controller):
    path = "/loads"
    tags = ["loads"]

    @post(operation_id="createLoad", summary="Post a load")
    async def create(self, data: JSONBody[LoadCreate], ctx: Ctx) -> LoadRead:
        row = await ctx.db.write(create_load, data, utcnow())
        return LoadRead.model_validate(row)

    @get("/{load_id:str}", operation_id="getLoad", summary="One load")
    async def read(self, load_id: FromPath[str], ctx: Ctx) -> LoadRead:
        row = await ctx.db.read(load_by_id, load_id)
        if row is None:
            raise not_found("LOAD_NOT_FOUND", "Load", load_id)
        return LoadRead.model_validate(row)

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
