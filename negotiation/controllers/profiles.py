"""Pricing profiles: list, create, read, add a version, list versions."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post, put
from litestar.params import JSONBody, PathParameter

from negotiation.controllers.params import Ctx
from negotiation.errors import not_found
from negotiation.openapi import error_responses
from negotiation.profile_schemas import ProfileCreate, ProfileList, ProfileRead, ProfileUpdate
from negotiation.profiles import (
    create_profile,
    current_profile,
    current_profiles,
    profile_versions,
    profile_view,
    update_profile,
)

ProfileNamePath = Annotated[str, PathParameter(max_length=64, description="The profile's name")]


def _read(row: object) -> ProfileRead:
    return ProfileRead.model_validate(profile_view(row))


class ProfileController(Controller):
    path = "/profiles"
    tags = ["profiles"]

    @get(operation_id="listProfiles", summary="Every pricing profile at its current version")
    async def list(self, ctx: Ctx) -> ProfileList:
        return ProfileList(items=[_read(r) for r in await ctx.db.read(current_profiles)])

    @post(
        operation_id="createProfile",
        summary="Create a pricing profile (its version 1)",
        responses=error_responses(409),
    )
    async def create(self, data: JSONBody[ProfileCreate], ctx: Ctx) -> ProfileRead:
        return _read(await ctx.db.write(create_profile, data, ctx.now))

    @get("/{name:str}", operation_id="getProfile", summary="A profile's current version")
    async def read(self, name: ProfileNamePath, ctx: Ctx) -> ProfileRead:
        row = await ctx.db.read_quick(current_profile, name)
        if row is None:
            raise not_found("PROFILE_NOT_FOUND", "Pricing profile", name)
        return _read(row)

    @put("/{name:str}", operation_id="updateProfile", summary="Record a profile's next version")
    async def update(
        self, name: ProfileNamePath, data: JSONBody[ProfileUpdate], ctx: Ctx
    ) -> ProfileRead:
        return _read(await ctx.db.write(update_profile, name, data, ctx.now))

    @get(
        "/{name:str}/versions",
        operation_id="listProfileVersions",
        summary="Every version of a profile, oldest first",
    )
    async def versions(self, name: ProfileNamePath, ctx: Ctx) -> ProfileList:
        rows = await ctx.db.read(profile_versions, name)
        if not rows:
            raise not_found("PROFILE_NOT_FOUND", "Pricing profile", name)
        return ProfileList(items=[_read(r) for r in rows])
