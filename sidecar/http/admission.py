"""Connection admission: no local client can exhaust the daemon.

- At most ``max_connections`` open client connections. A new one beyond the cap first evicts
  the oldest connection that is not being answered (idle keep-alive, or still sending its
  head); only when every connection is busy is the newcomer answered ``429`` and closed,
  cheaply, before any parsing.
- A request head must arrive within ``HEAD_TIMEOUT_SECS`` of its first byte (slowloris).
- An idle keep-alive connection is closed after ``IDLE_TIMEOUT_SECS``.
- Request lines and header fields are bounded near what the API needs (the query limit is
  8 KiB; a ``/v1/<id>`` path may be three times a 2048-character id, percent-encoded).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

HEAD_TIMEOUT_SECS = 5.0
IDLE_TIMEOUT_SECS = 60.0
SWEEP_EVERY_SECS = 1.0
MAX_LINE_BYTES = 16 * 1024
MAX_FIELD_BYTES = 8 * 1024
MAX_HEADERS = 64
REFUSED = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
           b"Content-Length: 80\r\nConnection: close\r\n\r\n"
           b'{"__type":"TooManyConnections","message":"too many open connections; try again"}')


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler, noting when a request head started arriving."""

    __slots__ = ("head_since",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_since: float | None = None

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:
            self.head_since = None  # a head completed
        elif self.head_since is None:
            self.head_since = self._loop.time()

    def busy(self) -> bool:
        return bool(self._request_in_progress)


class GuardedServer(web.Server):
    def __init__(self, handler: Any, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(handler, keepalive_timeout=IDLE_TIMEOUT_SECS,
                         max_line_size=MAX_LINE_BYTES, max_field_size=MAX_FIELD_BYTES,
                         max_headers=MAX_HEADERS, **kwargs)
        self.max_connections = max_connections
        self.refused = 0
        self.evicted = 0
        self._sweeping: asyncio.TimerHandle | None = None

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if len(self._connections) > self.max_connections:
            self._make_room(handler, transport)
        if self._sweeping is None:
            self._sweeping = self._loop.call_later(SWEEP_EVERY_SECS, self._sweep)

    def _make_room(self, newcomer: RequestHandler, transport: asyncio.Transport) -> None:
        for handler, other in self._connections.items():
            if handler is not newcomer and isinstance(handler, GuardedHandler) \
                    and not handler.busy():
                other.close()
                del self._connections[handler]  # gone now, whatever its close callback does
                self.evicted += 1
                return
        self.refused += 1
        transport.write(REFUSED)
        transport.close()

    def _sweep(self) -> None:
        """Close connections whose request head is overdue."""
        self._sweeping = None
        now = self._loop.time()
        for handler, transport in list(self._connections.items()):
            if isinstance(handler, GuardedHandler) and handler.head_since is not None \
                    and now - handler.head_since > HEAD_TIMEOUT_SECS and not handler.busy():
                transport.close()
        if self._connections:
            self._sweeping = self._loop.call_later(SWEEP_EVERY_SECS, self._sweep)

    def busy_connections(self) -> int:
        return sum(1 for handler in self._connections
                   if isinstance(handler, GuardedHandler) and handler.busy())
