"""Connection admission: no local client can exhaust the daemon (README, "Local clients cannot
exhaust it"; review S3-1 and S3-11).

- At most ``max_connections`` open client connections. A new one beyond the cap first evicts a
  connection stuck in a write (unsent answer bytes: its client does not read), then the oldest
  one not being answered (idle keep-alive, or still sending its head); only when every
  connection is busy is the newcomer answered ``429`` and closed, before aiohttp's handler
  exists for it, with no log line of its own (a counter, and at most one summary line a minute).
- Write deadline: an answer whose unsent bytes make no progress for ``WRITE_TIMEOUT_SECS`` closes
  its connection (checked every ``SWEEP_EVERY_SECS``).
- Unsent bytes per connection: while more than the transport's high-water mark (64 KiB) of an
  answer is unsent, the connection's next request is neither read nor answered, so a connection
  holds at most one answer plus 64 KiB, and at most aiohttp's 32 parsed requests. The kernel's
  send buffer is ``SEND_BUFFER_BYTES`` rather than autotuned up to 4 MB.
- Unsent bytes in total: above ``max_unsent_bytes``, the connections stuck longest in a write are
  closed (never the one whose answer just started) until the total is under it again.
- A request head must arrive within ``HEAD_TIMEOUT_SECS`` of its first byte (slowloris).
- An idle keep-alive connection is closed after ``IDLE_TIMEOUT_SECS``.
- Request lines and header fields are bounded near what the API needs (the query limit is
  8 KiB; a ``/v1/<id>`` path may be three times a 2048-character id, percent-encoded).

Connections the daemon ends itself are counted in ``Metrics.connections`` by reason; one holding
unsent bytes is aborted (a graceful close would wait for a reader that never comes).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

from aiohttp import http_writer, web
from aiohttp.web_protocol import RequestHandler

from sidecar.core import logs
from sidecar.core.metrics import Metrics

HEAD_TIMEOUT_SECS = 5.0
IDLE_TIMEOUT_SECS = 60.0
WRITE_TIMEOUT_SECS = 10.0
SWEEP_EVERY_SECS = 1.0
REFUSED_SUMMARY_SECS = 60.0
MAX_LINE_BYTES = 16 * 1024
MAX_FIELD_BYTES = 8 * 1024
MAX_HEADERS = 64
# The kernel's send buffer per connection (Linux doubles it for its bookkeeping). Autotuned, it
# grows to 4 MB: kernel memory (charged to a container's cgroup) that a client which never
# reads fills for free, and answers the daemon writes for nothing. A local reader loses nothing.
SEND_BUFFER_BYTES = 64 * 1024
REFUSED = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
           b"Content-Length: 80\r\nConnection: close\r\n\r\n"
           b'{"__type":"TooManyConnections","message":"too many open connections; try again"}')


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler, noting when a request head started arriving and since when
    its unsent answer bytes have not moved."""

    __slots__ = ("head_since", "refused", "unsent_counted", "unsent_seen", "unsent_since")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_since: float | None = None
        self.unsent_since: float | None = None
        self.unsent_seen = 0
        self.unsent_counted = 0  # counted toward the server's total while writes are paused
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._manager
        if isinstance(server, GuardedServer) and not server.admit(self):
            # Refused before aiohttp's part starts: no handler task exists that could fail on
            # the closed transport (each one used to log "Task exception was never retrieved").
            self.refused = True
            assert isinstance(transport, asyncio.Transport)
            transport.write(REFUSED)
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.refused:
            return
        server = self._manager
        if isinstance(server, GuardedServer):
            server.unstalled(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:
            self.head_since = None  # a head completed
        elif self.head_since is None:
            self.head_since = self._loop.time()

    def pause_writing(self) -> None:
        """The transport holds more than its high-water mark: stop reading requests (no more
        pipelined work while an answer is unsent) and start the write deadline."""
        super().pause_writing()
        if self.unsent_since is None:
            self.unsent_since = self._loop.time()
        self._pause_transport_reading()
        server = self._manager
        if isinstance(server, GuardedServer):
            server.stalled(self)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.unsent_since = None  # the client read down to the low-water mark: progress
        if not self._reading_paused and not self._buffer_paused:
            self._resume_transport_reading()
        server = self._manager
        if isinstance(server, GuardedServer):
            server.unstalled(self)

    def busy(self) -> bool:
        return bool(self._request_in_progress)

    def write_overdue(self, unsent: int, now: float) -> bool:
        """True when ``unsent`` bytes (the transport's buffer now) have not moved for longer
        than the write deadline. Any shrinking counts as progress."""
        if unsent == 0:
            self.unsent_since = None
        elif self.unsent_since is None or unsent < self.unsent_seen:
            self.unsent_since = now
        self.unsent_seen = unsent
        return self.unsent_since is not None and now - self.unsent_since > WRITE_TIMEOUT_SECS


_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, drops what is queued


def _end(transport: asyncio.Transport) -> None:
    """Close; reset when answer bytes are unsent. A graceful close would wait for a reader that
    never comes: in the transport's buffer, and then in the kernel's, whose orphaned socket
    keeps the bytes (and the client's connection open) for minutes."""
    if not transport.get_write_buffer_size():
        transport.close()
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    transport.abort()


def _write_bodies_unjoined(loop: asyncio.AbstractEventLoop) -> None:
    """On uvloop, let aiohttp hand headers and body to the transport as they are.

    Before Python 3.12.9 aiohttp joins them into one new bytes object (``SKIP_WRITELINES``),
    because asyncio's own ``writelines`` was unsafe in 3.12.0-3.12.8. uvloop's transport has a
    ``writelines`` of its own, so there a large answer goes out without a copy: a cached 1 MiB
    object is sent (and held while unsent) as the cache's bytes, not as a fresh megabyte per
    answer, which a client that never reads could make the daemon repeat as fast as it
    connects. Bodies under aiohttp's 2 KiB threshold (hits of parameters) are unchanged."""
    if type(loop).__module__.startswith("uvloop"):
        http_writer.SKIP_WRITELINES = False


class GuardedServer(web.Server):
    def __init__(self, handler: Any, *, max_connections: int, max_unsent_bytes: int,
                 metrics: Metrics | None = None, **kwargs: Any) -> None:
        super().__init__(handler, keepalive_timeout=IDLE_TIMEOUT_SECS,
                         max_line_size=MAX_LINE_BYTES, max_field_size=MAX_FIELD_BYTES,
                         max_headers=MAX_HEADERS, **kwargs)
        self.max_connections = max_connections
        self.max_unsent_bytes = max_unsent_bytes
        _write_bodies_unjoined(self._loop)
        self.metrics = metrics or Metrics()
        self._stalled: dict[GuardedHandler, None] = {}  # paused writers, oldest first
        self._stalled_bytes = 0  # what they held when they paused
        self._sweeping: asyncio.TimerHandle | None = None
        self._refused_unreported = 0
        self._summary_due = 0.0

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)

    def admit(self, newcomer: GuardedHandler) -> bool:
        """Room for ``newcomer`` (evicting if needed), or False: refuse it."""
        if self._sweeping is None:
            self._sweeping = self._loop.call_later(SWEEP_EVERY_SECS, self._sweep)
        if len(self._connections) < self.max_connections or self._make_room():
            return True
        self.metrics.refused += 1
        self._refused_unreported += 1
        self._summarise_refusals(self._loop.time())
        return False

    def _make_room(self) -> bool:
        """Evict the connection stuck longest in a write, else the oldest one holding unsent
        bytes or idle. The first is O(1) (paused writers are kept in order): at the cap, every
        newcomer lands here, and a flood of them must not cost a scan of every connection."""
        while self._stalled:
            stuck = next(iter(self._stalled))  # stalled longest
            held = self._connections.get(stuck)
            if held is not None:
                self._close(stuck, held, "evicted_stalled")
                return True
            self.unstalled(stuck)
        for handler, transport in self._connections.items():  # oldest first
            if not isinstance(handler, GuardedHandler):
                continue
            if transport.get_write_buffer_size():
                self._close(handler, transport, "evicted_stalled")
                return True
            if not handler.busy():
                self._close(handler, transport, "evicted_idle")
                return True
        return False

    def _close(self, handler: RequestHandler, transport: asyncio.Transport, reason: str) -> None:
        _end(transport)
        del self._connections[handler]  # gone now, whatever its close callback does
        if isinstance(handler, GuardedHandler):
            self.unstalled(handler)
        self.metrics.connections[(reason,)] += 1

    def stalled(self, handler: GuardedHandler) -> None:
        """``handler``'s writes are paused: keep the total unsent under its bound by closing
        the connections stalled longest (never ``handler`` itself, whose answer just began).

        Each paused connection counts what it held when it paused (O(1) here, however many
        are paused): while paused, nothing is added to it, so that is an upper bound."""
        transport = self._connections.get(handler)
        if transport is None or handler in self._stalled:
            return
        handler.unsent_counted = transport.get_write_buffer_size()
        self._stalled[handler] = None
        self._stalled_bytes += handler.unsent_counted
        for other in list(self._stalled):
            if self._stalled_bytes <= self.max_unsent_bytes or other is handler:
                break
            held = self._connections.get(other)
            if held is not None:
                self._close(other, held, "unsent_bound")
            self.unstalled(other)

    def unstalled(self, handler: GuardedHandler) -> None:
        if handler in self._stalled:
            del self._stalled[handler]
            self._stalled_bytes -= handler.unsent_counted
            handler.unsent_counted = 0

    def _sweep(self) -> None:
        """Close connections whose writes are overdue or whose request head is."""
        self._sweeping = None
        now = self._loop.time()
        for handler, transport in list(self._connections.items()):
            if not isinstance(handler, GuardedHandler):
                continue
            if handler.write_overdue(transport.get_write_buffer_size(), now):
                self._close(handler, transport, "write_timeout")
            elif handler.head_since is not None and now - handler.head_since > HEAD_TIMEOUT_SECS \
                    and not handler.busy():
                self._close(handler, transport, "head_timeout")
        self._summarise_refusals(now)
        if self._connections or self._refused_unreported:
            self._sweeping = self._loop.call_later(SWEEP_EVERY_SECS, self._sweep)

    def _summarise_refusals(self, now: float) -> None:
        """At most one line per ``REFUSED_SUMMARY_SECS``, however many connections are refused
        (an unauthenticated client must not be able to write log lines at will)."""
        if self._refused_unreported and now >= self._summary_due:
            logs.warn("connections refused: every connection was busy at the cap",
                      refused=self._refused_unreported, max_connections=self.max_connections,
                      next_report_secs=int(REFUSED_SUMMARY_SECS))
            self._refused_unreported = 0
            self._summary_due = now + REFUSED_SUMMARY_SECS

    def busy_connections(self) -> int:
        return sum(1 for handler in self._connections
                   if isinstance(handler, GuardedHandler) and handler.busy())

    def gauges(self) -> dict[str, float]:
        """Open connections and the answer bytes they have not sent yet (for ``/metrics``)."""
        return {"http_connections_open": len(self._connections),
                "http_unsent_bytes": sum(transport.get_write_buffer_size()
                                         for transport in self._connections.values())}
