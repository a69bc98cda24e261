"""Connections of ``irreid-edge serve`` that cannot be held open by a slow or idle client.

uvicorn's HTTP/1.1 protocol (h11) with two additions, because uvicorn has neither:
- **a header deadline**: a connection must complete a request's headers within ``header_timeout``
  seconds of opening (or of its previous answer), however it trickles bytes; otherwise it is
  closed. (uvicorn's keep-alive timer restarts on every byte, so a header line every 5 s kept a
  socket forever.) Bodies have their own deadlines where the routes read them (app.py).
- **a connection cap that sheds the idle, not the working**: past ``max_connections`` a new
  connection first closes the connection that has waited longest for headers, then the one that
  has been sending a body longest; only when every connection is being answered is the newcomer
  refused (503). uvicorn's ``limit_concurrency`` answered every request 503, ``/health`` included,
  while idle sockets filled the table.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["guarded_protocol"]

_BUSY_BODY = b'{"detail": "too many connections are being answered; retry in a moment"}'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
         b"retry-after: 1\r\ncontent-length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


def guarded_protocol(max_connections: int, header_timeout: float) -> type[asyncio.Protocol]:
    """The protocol class to hand uvicorn (``Config(http=...)``) with these limits."""

    class GuardedH11(_Guarded):
        pass

    GuardedH11.max_connections = max_connections
    GuardedH11.header_timeout = header_timeout
    return GuardedH11


class _Guarded(H11Protocol):
    max_connections = 256
    header_timeout = 10.0

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _no_delay(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_since = self.loop.time()
        self._arm()
        if len(self.connections) > self.max_connections and not self._shed():
            transport.write(_BUSY)
            transport.close()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a new request's headers are complete
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._waiting_since = self.loop.time()
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- internals ---------------------------------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()  # type: ignore[union-attr]
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._idle() and not self.transport.is_closing():
            self.transport.close()

    def _idle(self) -> bool:
        """Waiting for a request's headers (none yet, or the last one answered)."""
        return self.cycle is None or self.cycle.response_complete

    def _receiving(self) -> bool:
        """In a request whose body has not all arrived."""
        return self.cycle is not None and not self.cycle.response_complete and self.cycle.more_body

    def _shed(self) -> bool:
        """Close one other connection to make room: the longest idle, else the longest receiving."""
        others = [c for c in self.connections if c is not self and isinstance(c, _Guarded)
                  and not c.transport.is_closing()]
        for pick in (_Guarded._idle, _Guarded._receiving):
            victims = [c for c in others if pick(c)]
            if victims:
                min(victims, key=lambda c: c._waiting_since).transport.close()
                return True
        return False


def _no_delay(transport: Any) -> None:
    """TCP_NODELAY on an accepted connection. uvicorn writes a response's headers and body in two
    sends; asyncio sets TCP_NODELAY only on sockets whose ``proto`` is IPPROTO_TCP, and the socket
    serve binds (proto 0) hands that 0 to every connection it accepts. With Nagle's algorithm on,
    the body then waited for the client's delayed ACK: every answer after a keep-alive connection's
    first took 40 ms more (GET /health 44 against 2.5 ms)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # a connection already reset: nothing to answer
            pass
