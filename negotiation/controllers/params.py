"""Parameter and dependency types shared by controllers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated

from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter

from negotiation.db import Database
from negotiation.ids import MAX_SESSION_ID_LENGTH, SESSION_ID_REGEX
from negotiation.pagination import MAX_LIMIT
from negotiation.recording import PolicySettings

INT_MAX = 2_147_483_647

CallId = Annotated[int, PathParameter(ge=1, le=INT_MAX, description="The call's id")]
CallIdQuery = Annotated[int | None, QueryParameter(ge=1, le=INT_MAX, description="A call's id")]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Page size, 1-1000")]
AfterId = Annotated[
    int | None, QueryParameter(ge=0, le=INT_MAX, description="Return rows with a larger id")
]
Cursor = Annotated[
    str | None, QueryParameter(max_length=512, description="next_cursor of the previous page")
]
SessionId = Annotated[
    str,
    PathParameter(
        description="The session's id",
        pattern=SESSION_ID_REGEX,
        min_length=1,
        max_length=MAX_SESSION_ID_LENGTH,
    ),
]
"""A session id in the path: a malformed one is 422 ``INVALID_SESSION_ID`` (``negotiation.errors``
maps Litestar's refusal of a parameter with this pattern)."""
SessionIdQuery = Annotated[
    str | None,
    QueryParameter(
        description="Only this session's rounds",
        pattern=SESSION_ID_REGEX,
        min_length=1,
        max_length=MAX_SESSION_ID_LENGTH,
    ),
]
"""A session id in the query, refused like :data:`SessionId`."""


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a handler takes from the application, as its one dependency ``ctx``.

    One dependency rather than one each: Litestar resolves two or more dependencies of a
    handler in an anyio task group, which cost a quarter of the CPU time of a session read
    (docs/PERFORMANCE.md).
    """

    db: Database
    #: The settings the pricing policy and sessions depend on.
    policy: PolicySettings
    #: The time of the request, from the app's clock (tests inject a controllable one).
    now: dt.datetime


Ctx = NamedDependency[RequestContext]
