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

    _second = -1
    _prefix = ""

    def _timestamp(self, created: float) -> str:
        """``created`` as ``datetime.isoformat(timespec="milliseconds")`` writes it in UTC; the
        date and time of day made once per second (a line is written per request)."""
        second = int(created)  # rounded as datetime.fromtimestamp rounds it
        micro = round((created - second) * 1_000_000)
        if micro == 1_000_000:
            second, micro = second + 1, 0
        if second != self._second:
            moment = dt.datetime.fromtimestamp(second, dt.UTC)
            self._prefix = moment.isoformat(timespec="seconds").removesuffix("+00:00")
            self._second = second
        return f"{self._prefix}.{micro // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created),
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
