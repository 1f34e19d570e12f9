"""Parameter and dependency types shared by controllers."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter

from negotiation.db import Database
from negotiation.pagination import MAX_LIMIT
from negotiation.service import PolicySettings

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
SessionIdQuery = Annotated[str | None, QueryParameter(description="Only this session's rounds")]
SessionIdPath = Annotated[str, PathParameter(description="The session's id")]

Db = NamedDependency[Database]
Policy = NamedDependency[PolicySettings]
#: The current time from the app's clock (injectable in tests).
Now = NamedDependency[dt.datetime]
