"""Error responses in the OpenAPI document, so every status code an operation can give is declared.

:func:`document_errors` walks the app's routes once at start-up and gives each operation the
error responses that follow from its shape (a key, parameters, a body, a resource in the path).
The errors decided by the state of the data (a 409 for a booked load) are declared where the
operation is, in its decorator: ``responses=error_responses(404, 409)``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.plugins.pydantic import PydanticSchemaPlugin
from litestar.routes import HTTPRoute
from litestar.typing import FieldDefinition
from pydantic import BaseModel

from negotiation.auth import requires_key
from negotiation.money import MAX_MONEY, PLAIN_AMOUNT, VALID_AMOUNT, MoneyInput
from negotiation.settings import Settings

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator


class DecimalAsNumber(OpenAPISchemaPlugin):
    """Money is an exact ``Decimal`` inside and a JSON number on the wire; requests may send it
    as a plain decimal string too (:mod:`negotiation.money`)."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return field_definition.annotation is Decimal

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        if any(isinstance(m, MoneyInput) for m in field_definition.metadata):
            return MONEY_INPUT_SCHEMA
        if schema_creator.is_constrained_field(field_definition):
            return schema_creator.for_constrained_field(field_definition)
        return Schema(type=OpenAPIType.NUMBER)


class ForbiddenExtraFields(OpenAPISchemaPlugin):
    """A request body that refuses unknown fields says so: ``additionalProperties: false``."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        model = field_definition.annotation
        return (
            isinstance(model, type)
            and issubclass(model, BaseModel)
            and model.model_config.get("extra") == "forbid"
        )

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = PydanticSchemaPlugin.for_pydantic_model(field_definition, schema_creator)
        schema.additional_properties = False
        return schema


MONEY_INPUT_SCHEMA = Schema(
    description=f"A{VALID_AMOUNT[1:]}.",
    one_of=[
        Schema(type=OpenAPIType.NUMBER, exclusive_minimum=0, maximum=float(MAX_MONEY)),
        Schema(type=OpenAPIType.STRING, pattern=f"^{PLAIN_AMOUNT.pattern}$"),
    ],
)


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    """The body of every 4xx/5xx response."""

    success: Literal[False]
    error: ErrorDetail
    request_id: str | None
    session_id: str | None
    timestamp: str


DESCRIPTIONS = {
    400: "INVALID_JSON: the body is not valid JSON",
    401: "UNAUTHORIZED: X-API-Key is missing or not a configured key",
    404: "Not found: CALL_NOT_FOUND, LOAD_NOT_FOUND, SESSION_NOT_FOUND, PROFILE_NOT_FOUND, ...",
    409: "Conflict with the current state, or REQUEST_IN_PROGRESS for an Idempotency-Key",
    410: "SESSION_EXPIRED",
    413: "PAYLOAD_TOO_LARGE: the body is over 64 KiB",
    415: "UNSUPPORTED_MEDIA_TYPE: send the body as application/json",
    422: (
        "VALIDATION_ERROR, INVALID_SESSION_ID, SESSION_ID_MISMATCH, INVALID_CURSOR, "
        "IDEMPOTENCY_KEY_REUSED, PROFILE_NOT_FOUND, ..."
    ),
    503: "DATABASE_UNAVAILABLE or DATABASE_BUSY: retry after the Retry-After seconds",
}


def _error_spec(code: int) -> ResponseSpec:
    return ResponseSpec(
        data_container=ErrorEnvelope, description=DESCRIPTIONS[code], generate_examples=False
    )


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    """An operation's errors decided by the state of the data, for its decorator's
    ``responses=`` (the ones that follow from its shape are added by :func:`document_errors`)."""
    return {code: _error_spec(code) for code in codes}


def _codes(handler: HTTPRouteHandler, path: str, settings: Settings) -> set[int]:
    codes = {503}
    if requires_key(path, settings):
        codes |= {401, 422}  # every API operation takes parameters or a body to validate
    if "data" in handler.parsed_fn_signature.parameters:
        codes |= {400, 413, 415, 422}
    if "{" in path:
        codes |= {404, 422}
    return codes


def document_errors(app: Litestar) -> None:
    """Declare, on every documented operation, the error responses it can give (the ones its
    decorator declares win; codes in order, as the document lists them)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not handler.include_in_schema:
                continue
            declared = dict(handler.responses or {})
            for code in _codes(handler, route.path, app.state.settings):
                declared.setdefault(code, _error_spec(code))
            handler.responses = dict(sorted(declared.items()))
