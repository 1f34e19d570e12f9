"""Validation failures as plain sentences: the one place that words them for people.

Litestar reports a body that pydantic refused with pydantic's errors, and a path, query or
header parameter that msgspec refused with msgspec's wording (``Expected `int` >= 1``). Neither
is shown: each failure becomes ``{"key", "message", "source"}`` whose message names the field,
says what a valid value looks like (listing an enum's values) and never shows a type name, a
repr or a library's prefix.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import types
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from litestar.exceptions import ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.params import KwargDefinition
from litestar.typing import FieldDefinition
from pydantic import BaseModel

Failure = dict[str, str]

#: How a value of each JSON type should look, by pydantic error type.
_EXPECTED = {
    "string_type": "must be text",
    "string_unicode": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number, without a fraction",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "list_type": "must be a JSON array",
    "none_required": "must be null",
}
#: Bounds, by pydantic error type (values from the error's context).
_BOUNDS = {
    "greater_than": "must be more than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "string_too_short": "must be at least {min_length} characters long",
    "string_too_long": "must be at most {max_length} characters long",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
}
#: Error types the project raises itself (PydanticCustomError), already worded for people.
_CUSTOM = {"money", "call_id"}
_WHEN = (
    "must be a date and time in ISO 8601 with a time zone, such as 2026-12-01T08:00:00Z "
    "(without one, UTC is assumed)"
)
#: Patterns of the request models, in words.
_PATTERNS = {
    r"^[A-Za-z0-9_\-.:]+$": "may contain only letters, digits, '_', '-', '.' and ':'",
}


def shorten(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters, so an echoed value never floods a message."""
    return text if len(text) <= limit else text[:limit] + "…"


def _plain(value: Any) -> str:
    """A bound or a received value as a person writes it (no reprs)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return f"{value:,}"
    return shorten(value if isinstance(value, str) else json.dumps(value, default=str))


def _sentence(name: str | None, problem: str) -> str:
    # Without a name the problem names its fields itself (a model's rule, e.g. "max_rate must be
    # at least loadboard_rate"), so it is kept as written.
    text = f"`{name}` {problem}" if name else problem
    return text if text.endswith((".", "?")) else text + "."


def failure(key: str, problem: str, source: str) -> Failure:
    """One failure: ``{"key", "message", "source"}``, the message a sentence naming ``key``."""
    return {"key": key, "message": _sentence(key, problem), "source": source}


def suggestion(name: str, known: Iterable[str]) -> str | None:
    """The known name nearest to ``name`` when one is close (a typo, another casing)."""
    choices = {k.lower().replace("_", ""): k for k in known}
    close = difflib.get_close_matches(name.lower().replace("_", ""), list(choices), n=1)
    if close:
        return choices[close[0]]
    # A shortened name ("ttl" for "ttl_seconds") when it names one known field only.
    key = name.lower().replace("_", "")
    prefixed = [k for n, k in choices.items() if key and n.startswith(key)]
    return prefixed[0] if len(prefixed) == 1 else None


def unknown_name(kind: str, name: str, known: Sequence[str]) -> str:
    """``Unknown field `sessionId` in the body; did you mean `session_id`?``"""
    text = f"Unknown {kind} `{name}`"
    if (near := suggestion(name, known)) is not None:
        return f"{text}; did you mean `{near}`?"
    if known:
        return f"{text}; the known ones are " + ", ".join(f"`{k}`" for k in sorted(known)) + "."
    return f"{text}; this route takes none."


def _pydantic_problem(error: dict[str, Any]) -> str:
    kind: str = error.get("type", "")
    ctx: dict[str, Any] = error.get("ctx") or {}
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind.startswith(("datetime", "date_", "time_", "timezone")):
        return _WHEN
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", "")) or "is not valid"
    if kind == "literal_error" or kind == "enum":
        return f"must be one of {ctx.get('expected')}"
    if kind in _BOUNDS:
        if kind == "string_too_short" and ctx.get("min_length") == 1:
            return "must not be empty"
        return _BOUNDS[kind].format(**{k: _plain(v) for k, v in ctx.items()})
    if kind == "string_pattern_mismatch":
        return _PATTERNS.get(str(ctx.get("pattern")), "does not have the expected format")
    if kind == "missing":
        return "is required"
    # The project's own error types (PydanticCustomError) are worded where they are raised.
    return str(error.get("msg")) if kind in _CUSTOM else "is not valid"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (model := _model_of(arg)) is not None:
            return model
    return None


def body_failures(errors: Sequence[dict[str, Any]], model: type[BaseModel] | None) -> list[Failure]:
    """Pydantic's errors of a JSON body, in words."""
    failures = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        key = ".".join(loc) or "body"
        if error.get("type") == "extra_forbidden":
            known = list(model.model_fields) if model is not None and len(loc) == 1 else []
            message = unknown_name("field", key, known).replace("`;", "` in the body;", 1)
        elif not loc and error.get("type") in ("model_type", "model_attributes_type"):
            message = "The body must be a JSON object."
        else:
            message = _sentence(key if loc else None, _pydantic_problem(error))
        failures.append({"key": key, "message": message, "source": "body"})
    return failures


def _bounds(kwarg: Any) -> str:
    if not isinstance(kwarg, KwargDefinition):
        return ""
    low = kwarg.ge if kwarg.ge is not None else kwarg.gt
    if low is not None and kwarg.le is not None:
        return f" from {_plain(low)} to {_plain(kwarg.le)}"
    if low is not None:
        return f" of at least {_plain(low)}"
    if kwarg.le is not None:
        return f" of at most {_plain(kwarg.le)}"
    return ""


def _length(kwarg: Any) -> str:
    if not isinstance(kwarg, KwargDefinition) or kwarg.max_length is None:
        return ""
    return f" of {kwarg.min_length or 1} to {kwarg.max_length} characters"


def expected_value(field: FieldDefinition) -> str:
    """What a valid value of a path, query or header parameter looks like, in words."""
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"'{v}'" for v in get_args(annotation))
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "a whole number" + _bounds(field.kwarg_definition)
    if annotation is dt.datetime:
        return _WHEN.removeprefix("must be ")
    if annotation is str:
        return "text" + _length(field.kwarg_definition)
    return "a valid value"


def parameter_failures(
    items: Sequence[dict[str, Any]], handler: BaseRouteHandler | None
) -> list[Failure]:
    """Litestar's report of refused parameters, reworded from each parameter's declared type."""
    fields = handler.parsed_fn_signature.parameters if handler is not None else {}
    failures = []
    for item in items:
        key = str(item.get("key") or "")
        source = str(getattr(item.get("source"), "value", item.get("source")) or "request")
        field = fields.get(key)
        if key == "data":
            # Litestar's report of a missing body names the handler's parameter.
            failures.append(
                {
                    "key": "body",
                    "message": "A JSON object is required as the body.",
                    "source": "body",
                }
            )
            continue
        name = _alias(field) or key
        problem = f"must be {expected_value(field)}" if field is not None else "is not valid"
        failures.append({"key": name, "message": _sentence(name, problem), "source": source})
    return failures


def _alias(field: FieldDefinition | None) -> str | None:
    kwarg = field.kwarg_definition if field is not None else None
    if isinstance(kwarg, KwargDefinition) and hasattr(kwarg, "header"):
        return getattr(kwarg, "header", None) or getattr(kwarg, "query", None)
    return None


def validation_failures(
    exc: ValidationException, handler: BaseRouteHandler | None
) -> list[Failure]:
    """Every failure that ``exc`` reports, in words (the first one is the message)."""
    errors = getattr(exc.__cause__, "errors", None)
    if isinstance(errors, list):  # a body pydantic refused
        data = handler.parsed_fn_signature.parameters.get("data") if handler else None
        return body_failures(errors, _model_of(data.annotation) if data else None)
    items = [i for i in exc.extra if isinstance(i, dict)] if isinstance(exc.extra, list) else []
    return parameter_failures(items, handler)
