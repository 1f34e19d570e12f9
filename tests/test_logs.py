"""One structured JSON access-log line per request, with the ids the request named."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from negotiation.logs import FlushingStreamHandler, JsonFormatter
from tests.helpers import Client, negotiate

Make = Callable[..., Awaitable[dict[str, Any]]]


class Lines(logging.Handler):
    """Keeps each record as the JSON line the service writes to stdout."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def access_log() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("negotiation.access")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def test_one_json_line_per_request(
    client: Client, make_call: Make, access_log: Lines
) -> None:
    call = await make_call()
    access_log.lines.clear()
    cid = call["id"]
    responses = [
        await negotiate(client, cid, 2500, "sess-log"),
        await client.get("/api/negotiations/session/sess-log"),
        await client.get("/api/negotiations", params={"call_id": cid}),
        await client.get(f"/api/calls/{cid}/negotiations", headers={"X-Session-ID": "hdr"}),
        await client.get("/nope"),
        await client.get("/api/loads", headers={"X-API-Key": "wrong"}),
        await client.get("/health", headers={"X-Request-ID": "given-id"}),
    ]
    assert all("\n" not in line for line in access_log.lines)
    entries = access_log.entries()
    assert len(entries) == len(responses)
    for entry, response in zip(entries, responses, strict=True):
        assert entry["logger"] == "negotiation.access"
        assert entry["method"] == response.request.method
        assert entry["path"] == response.request.url.path
        assert entry["status"] == response.status_code
        assert entry["request_id"] == response.headers["x-request-id"]
        assert isinstance(entry["duration_ms"], int | float) and entry["duration_ms"] >= 0
        assert entry["ts"].endswith("+00:00")

    offer, by_session, by_query, by_header, unknown, refused, health = entries
    assert (offer["session_id"], offer["call_id"], offer["status"]) == ("sess-log", cid, 201)
    assert by_session["session_id"] == "sess-log" and "call_id" not in by_session
    assert by_query["call_id"] == cid
    assert (by_header["session_id"], by_header["call_id"]) == ("hdr", cid)
    assert unknown["status"] == 404 and "session_id" not in unknown
    assert refused["status"] == 401
    assert health["request_id"] == "given-id"


async def test_failed_request_is_logged_once_with_its_ids(
    client: Client, make_call: Make, access_log: Lines
) -> None:
    call = await make_call()
    access_log.lines.clear()
    await negotiate(client, call["id"], -1, "sess-bad")
    (entry,) = access_log.entries()
    assert (entry["status"], entry["session_id"], entry["call_id"]) == (422, "sess-bad", call["id"])


ONE_FORMATTER = JsonFormatter()  # one across examples, so its per-second prefix is reused


@given(st.floats(min_value=0, max_value=4e9) | st.integers(0, 4 * 10**9).map(lambda s: s - 5e-7))
def test_the_line_time_is_isoformat_in_milliseconds(created: float) -> None:
    expected = dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="milliseconds")
    assert ONE_FORMATTER._timestamp(created) == expected


def _logger_to(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"negotiation.test-flushing-{id(handler)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger


def test_lines_are_flushed_together_warnings_at_once_and_the_rest_at_close() -> None:
    raw = io.BytesIO()
    handler = FlushingStreamHandler(io.TextIOWrapper(raw, encoding="utf-8"), interval=3600)
    logger = _logger_to(handler)
    logger.info("first")
    logger.info("second")
    assert raw.getvalue() == b""  # written, not yet flushed (no write system call per line)
    logger.warning("third")
    assert raw.getvalue() == b"first\nsecond\nthird\n"
    logger.info("fourth")
    handler.close()  # as logging.shutdown() does at exit
    logger.removeHandler(handler)
    assert raw.getvalue().endswith(b"third\nfourth\n")


def test_a_quiet_moment_flushes_lines_within_the_interval() -> None:
    raw = io.BytesIO()
    handler = FlushingStreamHandler(io.TextIOWrapper(raw, encoding="utf-8"), interval=0.05)
    logger = _logger_to(handler)
    logger.info("alone")
    deadline = time.monotonic() + 10
    while raw.getvalue() != b"alone\n" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert raw.getvalue() == b"alone\n"
    handler.close()
    logger.removeHandler(handler)


def test_a_stream_closed_under_the_handler_does_not_stop_its_flushes() -> None:
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    handler = FlushingStreamHandler(stream, interval=0.01)
    logger = _logger_to(handler)
    logger.info("before the stream closes")
    stream.close()  # e.g. the process's stdout replaced and closed
    deadline = time.monotonic() + 10
    while handler._pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not handler._pending  # the flush was tried ...
    assert handler._flusher is not None and handler._flusher.is_alive()  # ... and survived
    handler.stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # not setStream: it flushes
    handler.close()
    logger.removeHandler(handler)
