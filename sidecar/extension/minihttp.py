"""A minimal HTTP/1.1 client over a plain socket, for the Lambda Extensions API.

``http.client`` costs ~19 ms to import (it pulls in ``ssl`` and the ``email`` parser), and
everything imported before the extension's register and first ``event/next`` is added to the
function's cold start. The Extensions API is plain HTTP on a local address with small JSON
bodies: one request per connection, ``Content-Length`` or chunked answers.
"""

from __future__ import annotations

import socket


class HttpError(Exception):
    """The exchange failed (refused, reset, timed out, or a malformed answer)."""


def request(host: str, port: int, method: str, path: str, headers: dict[str, str],
            body: bytes | None, timeout: float | None) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, lower-cased headers, body)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    try:
        with _connect(host, port, timeout) as sock:
            sock.sendall(head + (body or b""))
            return _read(sock)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise HttpError(type(exc).__name__) from None


def _connect(host: str, port: int, timeout: float | None) -> socket.socket:
    """An IPv4 literal (what Lambda gives) is connected directly: ``getaddrinfo`` would import
    the ``idna`` codec (5 ms of INIT) to encode even an ASCII address."""
    if host.count(".") == 3 and host.replace(".", "").isdigit():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def _more(sock: socket.socket, where: str) -> bytes:
    """The next bytes; the connection closing here is an error."""
    chunk = sock.recv(65536)
    if not chunk:
        raise HttpError(f"connection closed {where}")
    return chunk


def _read(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += _more(sock, "before the answer's head")
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HttpError("malformed status line")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return int(parts[1]), headers, _dechunk(sock, rest)
    length = headers.get("content-length")
    if length is not None:
        wanted = int(length)
        while len(rest) < wanted:
            rest += _more(sock, "before the answer's body")
        return int(parts[1]), headers, rest[:wanted]
    while True:  # neither: the body runs until the server closes
        chunk = sock.recv(65536)
        if not chunk:
            return int(parts[1]), headers, rest
        rest += chunk


def _dechunk(sock: socket.socket, data: bytes) -> bytes:
    body = b""
    while True:
        while b"\r\n" not in data:
            data += _more(sock, "in a chunk size")
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return body
        while len(data) < size + 2:
            data += _more(sock, "in a chunk")
        body += data[:size]
        data = data[size + 2:]
