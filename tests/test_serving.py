"""The served HTTP protocol sends a response's head and body in one write (negotiation.serving).

uvicorn's own httptools protocol runs here on a transport that records its writes, so the
tests see exactly what reaches the socket; the last test asks ``negotiation serve`` itself.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from negotiation.serving import JOIN_LIMIT, CoalescingHttpToolsProtocol, CoalescingTransport
from tests import dbutil
from tests.server import running_server

ASGI = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
REQUEST = b"GET /x HTTP/1.1\r\nHost: test\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    """A socket transport that keeps what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def answer(protocol_class: type[HttpToolsProtocol], app: ASGI) -> list[bytes]:
    """The writes one request's answer makes through ``protocol_class``."""
    config = uvicorn.Config(app, http=protocol_class, log_config=None, lifespan="off")
    protocol = protocol_class(config, ServerState(), {}, asyncio.get_running_loop())
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(REQUEST)
    for _ in range(1000):
        if protocol.cycle is not None and protocol.cycle.response_complete:
            break
        await asyncio.sleep(0)
    await asyncio.sleep(0)  # the loop's turn after the last write
    assert protocol.cycle.response_complete
    return transport.writes


async def whole(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b'{"status":"ok"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def streamed(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for chunk in (b"one", b"two", b"three"):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await asyncio.sleep(0)  # as a stream waiting on its source does
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def test_a_response_goes_out_in_one_write_where_uvicorn_makes_two() -> None:
    plain = await answer(HttpToolsProtocol, whole)
    coalesced = await answer(CoalescingHttpToolsProtocol, whole)
    assert len(plain) == 2, "uvicorn writes the head, then the body"
    assert coalesced == [b"".join(plain)]
    assert coalesced[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert coalesced[0].endswith(b'\r\n\r\n{"status":"ok"}')


async def test_a_streamed_response_is_written_as_it_comes_the_same_bytes() -> None:
    plain = await answer(HttpToolsProtocol, streamed)
    coalesced = await answer(CoalescingHttpToolsProtocol, streamed)
    assert b"".join(coalesced) == b"".join(plain)
    assert b"".join(coalesced).endswith(b"5\r\nthree\r\n0\r\n\r\n")
    # The head goes with the first chunk; each chunk leaves when the stream waits.
    assert len(coalesced) == len(plain) - 1 == 4


async def test_a_lone_write_leaves_at_the_end_of_the_loops_turn() -> None:
    transport = RecordingTransport()
    held = CoalescingTransport(transport, asyncio.get_running_loop())
    held.write(b"head")
    assert transport.writes == []
    await asyncio.sleep(0)
    assert transport.writes == [b"head"]
    held.write(b"a")
    held.write(memoryview(b"b"))
    held.write(bytearray(b"c"))
    assert transport.writes == [b"head", b"ab"]
    await asyncio.sleep(0)
    assert transport.writes == [b"head", b"ab", b"c"]


async def test_a_large_body_follows_the_head_without_being_joined_to_it() -> None:
    transport = RecordingTransport()
    held = CoalescingTransport(transport, asyncio.get_running_loop())
    body = b"x" * (JOIN_LIMIT + 1)
    held.write(b"head")
    held.write(body)
    assert transport.writes == [b"head", body]


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    closed = RecordingTransport()
    held = CoalescingTransport(closed, loop)
    held.write(b"last words")
    held.close()
    assert closed.writes == [b"last words"] and closed.closed
    aborted = RecordingTransport()
    dropped = CoalescingTransport(aborted, loop)
    dropped.write(b"never sent")
    dropped.abort()
    await asyncio.sleep(0)
    assert aborted.writes == [] and aborted.aborted


async def test_a_write_held_while_the_socket_closed_is_dropped() -> None:
    transport = RecordingTransport()
    held = CoalescingTransport(transport, asyncio.get_running_loop())
    held.write(b"too late")
    transport.closed = True  # the client went away before the loop's turn ended
    await asyncio.sleep(0)
    assert transport.writes == []
    assert held.is_closing() and held.get_extra_info("peername") == ("127.0.0.1", 50000)


@pytest.mark.slow
def test_negotiation_serve_answers_in_one_segment(tmp_path: Path, sqlite_template: Path) -> None:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "loads.db")
    with running_server({"database_url": url}) as server:
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
                conn.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                first = conn.recv(65536)  # what the first segment brought
            head, _, body = first.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), first
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            assert len(body) == length > 0, first
