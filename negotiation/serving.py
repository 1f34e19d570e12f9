"""uvicorn's HTTP protocol with a response's head and body sent in one write.

uvicorn writes the status line and headers when the application sends
``http.response.start`` and the body when it sends ``http.response.body``: two ``send``
system calls per answer, and on loopback two deliveries to the client, which wakes for each.
:class:`CoalescingHttpToolsProtocol` (what ``negotiation serve`` runs) gives uvicorn's own
httptools protocol a transport that holds a lone write until the next write or the end of the
event loop's current turn, whichever comes first: the head goes out with the body that follows
it in the same turn, and nothing waits longer than that turn. At most one write is held, so a
streamed response is still written chunk by chunk under the transport's flow control.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Writes larger than this follow a held one separately rather than joined to it.
JOIN_LIMIT = 64 * 1024


class CoalescingTransport:
    """A transport whose lone write waits for the next write or the loop's next turn."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._release)
        else:
            self._held = None
            if len(data) > JOIN_LIMIT:  # a large body is not copied to save one system call
                self._transport.write(held)
                self._transport.write(data)
            else:
                self._transport.write(held + data)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def _release(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._release()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, get_extra_info, pause_reading, set_protocol...) is the
        # socket transport's own.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
