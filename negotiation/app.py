"""The application factory."""

from __future__ import annotations

import datetime as dt
import gc
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from functools import cached_property

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig
from litestar.types import Receive, Scope, Send

from negotiation import __version__
from negotiation.agents.http import mcp_endpoint, mcp_lifespan
from negotiation.auth import API_KEY_HEADER, ApiKeyGate
from negotiation.body import ApiRequest
from negotiation.controllers.calls import CallController
from negotiation.controllers.health import health
from negotiation.controllers.loads import LoadController
from negotiation.controllers.negotiations import NegotiationController
from negotiation.controllers.params import RequestContext
from negotiation.controllers.profiles import ProfileController
from negotiation.controllers.reports import ReportController
from negotiation.controllers.sessions import SessionController
from negotiation.db import Database
from negotiation.errors import EXCEPTION_HANDLERS
from negotiation.hardening import cors_config
from negotiation.idempotency import IdempotencySettings
from negotiation.logs import logging_config
from negotiation.metrics import metrics
from negotiation.middleware import PathIds, RequestContextMiddleware, route_ids
from negotiation.openapi import DecimalAsNumber, ForbiddenExtraFields, document_errors
from negotiation.profiles import record_standard_profile
from negotiation.recording import PolicySettings
from negotiation.schema_ui import SCHEMA_PATH, assets_router, render_plugins
from negotiation.service import utcnow
from negotiation.settings import Settings, settings_or_exit
from negotiation.strict import check_request, declare_query_params
from negotiation.templating import environment
from negotiation.web.auth import EXCEPTION_HANDLERS as UI_EXCEPTION_HANDLERS
from negotiation.web.auth import login_middleware, require_login
from negotiation.web.pages import PagesController

logger = logging.getLogger("negotiation.app")

#: Bodies above this are refused with 413 before they are read in full.
MAX_BODY_BYTES = 64 * 1024


class NegotiationApp(Litestar):
    """Litestar with the request context (ids, session header, security headers, access log)
    and the API key check around every request.

    Litestar runs middleware only for requests that matched a route; wrapping the application
    itself gives 404 and 405 responses their ``X-Request-ID``, headers and log line too, and
    refuses a request without a key before routing could tell it which routes exist.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == ScopeType.HTTP:
            await self._request_context(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    @cached_property
    def _request_context(self) -> RequestContextMiddleware:
        gate = ApiKeyGate(self._handle, self.state.settings)
        paths = PathIds(route.path for route in self.routes)  # the routes at the first request
        return RequestContextMiddleware(gate, paths)


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], dt.datetime] = utcnow
) -> Litestar:
    """Build the service; tests pass their own ``settings``, the server reads the environment.

    ``clock`` (aware UTC ``datetime``) is the time handlers record and judge expiry by; tests
    pass a controllable one instead of sleeping. Invalid settings from the environment (e.g.
    ``ENV=production`` without keys) exit with a message saying what to fix.
    """
    settings = settings or settings_or_exit()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        if settings.uses_default_key:
            logger.warning(
                "NEGOTIATION_API_KEYS is not set: the development key 'default-api-key' is "
                "accepted. Set keys before exposing this service."
            )
        app.state.db = Database(settings)
        await record_standard_profile(app.state.db, settings)
        try:
            yield
        finally:
            await app.state.db.dispose()

    policy = PolicySettings.from_settings(settings)

    def provide_context() -> RequestContext:
        # No parameters, so Litestar has nothing to parse for it on each request.
        return RequestContext(app.state.db, policy, clock())

    api = Router(
        path="/api",
        route_handlers=[
            LoadController,
            CallController,
            NegotiationController,
            SessionController,
            ReportController,
            ProfileController,
        ],
        security=[{"apiKey": []}],
    )
    ui = Router(
        path="/",
        route_handlers=[PagesController],
        middleware=[login_middleware(settings)],
        guards=[require_login],
        exception_handlers=UI_EXCEPTION_HANDLERS,
        include_in_schema=False,
    )
    operations = Router(
        path="/",
        route_handlers=[metrics],
        security=[] if settings.metrics_public else [{"apiKey": []}],
    )
    app = NegotiationApp(
        route_handlers=[api, ui, health, operations, assets_router(), mcp_endpoint],
        # The MCP tools take the same context as the HTTP handlers.
        lifespan=[lifespan, mcp_lifespan(provide_context, MAX_BODY_BYTES)],
        state=State(
            {
                "settings": settings,
                "idempotency": IdempotencySettings.from_settings(settings),
            }
        ),
        dependencies={"ctx": Provide(provide_context, sync_to_thread=False)},
        # Runs once a route matched: the session and call ids from its path parameters.
        middleware=[route_ids],
        exception_handlers=EXCEPTION_HANDLERS,
        logging_config=logging_config(settings.log_level),
        request_max_body_size=MAX_BODY_BYTES,
        request_class=ApiRequest,
        before_request=check_request,
        template_config=TemplateConfig(
            instance=JinjaTemplateEngine.from_environment(environment())
        ),
        cors_config=cors_config(settings),
        plugins=[DecimalAsNumber(), ForbiddenExtraFields()],
        openapi_config=OpenAPIConfig(
            title="Negotiation API",
            version=__version__,
            description="Records and decides price negotiations between a broker and carriers.",
            path=SCHEMA_PATH,
            render_plugins=render_plugins(),
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="apiKey",
                        name=API_KEY_HEADER,
                        security_scheme_in="header",
                        description="One of the keys in NEGOTIATION_API_KEYS.",
                    )
                }
            ),
        ),
    )
    document_errors(app)
    declare_query_params(app)
    return app


def create_served_app() -> Litestar:
    """The app as ``negotiation serve`` runs it: :func:`create_app` with the collector tuned.

    Everything built at start lives as long as the worker process. Frozen, the cyclic garbage
    collector no longer walks it: a full collection took 60-100 ms (every few seconds under
    load, as objects of requests in flight get promoted) and set the p99 of every request.
    Only the server's own process does this; an app built in a test or a script leaves the
    collector alone. Its log records skip what the JSON lines never show: the caller's source
    line (a walk up the stack per record), thread and process names (the logging HOWTO's
    "Optimization").
    """
    app = create_app()
    app.on_startup.append(_freeze_startup_objects)
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    return app


def _freeze_startup_objects() -> None:
    gc.collect()
    gc.freeze()
