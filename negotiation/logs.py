"""Structured JSON log lines on stdout, configured through Litestar's ``LoggingConfig``.

Lines below WARNING reach stdout within 0.2 s of being logged (:class:`FlushingStreamHandler`),
warnings and errors at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
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


class FlushingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that flushes lines below WARNING within ``interval`` seconds rather
    than one by one: a flush is a ``write`` system call, and an access line is written per
    request (py-spy: 4.7 % of a session read). WARNING and above, and closing (at exit), flush
    at once. A daemon thread, started with the first line, does the timed flushes.
    """

    def __init__(self, stream: Any = None, interval: float = 0.2) -> None:
        super().__init__(stream)
        self.interval = interval
        self._pending = False
        self._closing = threading.Event()
        self._flusher: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.flush()
                return
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
            return
        self._pending = True
        if self._flusher is None:
            self._flusher = threading.Thread(
                target=self._flush_pending, name="log-flusher", daemon=True
            )
            self._flusher.start()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # made by Handler.__init__
            self._pending = False
            super().flush()

    def _flush_pending(self) -> None:
        while not self._closing.wait(self.interval):
            if self._pending:
                # A stream closed under us is tolerated, as logging.shutdown() tolerates it.
                with contextlib.suppress(OSError, ValueError):
                    self.flush()

    def close(self) -> None:
        self._closing.set()
        self.flush()
        super().close()


def logging_config(level: str) -> LoggingConfig:
    """JSON lines on stdout for the service's loggers and the server's."""
    return LoggingConfig(
        formatters={"json": {"()": JsonFormatter}},
        handlers={
            "stdout": {
                "class": "negotiation.logs.FlushingStreamHandler",
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
