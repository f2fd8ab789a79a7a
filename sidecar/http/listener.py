"""The listening socket. Standard library only: Lambda mode binds it before the register call,
before aiohttp is even imported."""

from __future__ import annotations

import socket


def bind(port: int) -> socket.socket:
    """The listening socket, on the loopback address only (never all interfaces)."""
    sock = socket.create_server(("127.0.0.1", port), backlog=1024)
    sock.setblocking(False)
    return sock
