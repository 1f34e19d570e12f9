"""Error messages are for people: what no error body the suite receives may contain.

``conftest.py`` records every error body the app builds during each test (through
:func:`negotiation.errors.error_body`, which every 4xx/5xx of the app goes through) and fails
the test when :func:`internals_in` finds anything here in a message or a detail's message.
"""

from __future__ import annotations

import builtins
import inspect
import pkgutil
import re
from importlib import import_module
from typing import Any

import negotiation

#: Library and Python wording that must never reach a client.
PHRASES = ("Decimal(", "Value error", "Expected `", "instance of", "Traceback", "NoneType")


def _class_names() -> set[str]:
    """Python's exception and type names, and every class the project defines."""
    names = {
        name
        for name, value in vars(builtins).items()
        if isinstance(value, type) and (issubclass(value, BaseException) or name[0].isupper())
    }
    names |= {"Decimal", "BaseModel", "ValidationError", "ValidationException", "UUID"}
    for module in pkgutil.walk_packages(negotiation.__path__, "negotiation."):
        loaded = import_module(module.name)
        names |= {
            name
            for name, value in vars(loaded).items()
            if inspect.isclass(value) and value.__module__ == module.name
        }
    # Two-capital CamelCase only: "Ellipsis" or "Page" could be ordinary words.
    return {n for n in names if re.fullmatch(r"_?[A-Z][a-z0-9]+[A-Z]\w*", n) or n == "Decimal"}


CLASS_NAMES = re.compile(r"\b(" + "|".join(sorted(_class_names(), key=len, reverse=True)) + r")\b")


def messages_of(body: dict[str, Any]) -> list[str]:
    """The message and every detail's message of an error body."""
    error = body.get("error") or {}
    found = [str(error.get("message", ""))]
    details = error.get("details")
    if isinstance(details, list):
        found += [str(d["message"]) for d in details if isinstance(d, dict) and "message" in d]
    return found


def internals_in(message: str) -> list[str]:
    """What in ``message`` is Python or library vocabulary (empty: a plain sentence)."""
    found = [phrase for phrase in PHRASES if phrase in message]
    return found + CLASS_NAMES.findall(message)
