"""The daemon's HTTP API as the wrapper and ``exec`` read it: over TCP or a Unix socket, with
one deadline for everything. Standard library only, and only its light parts: the wrapper runs
inside the function's INIT, where ``http.client`` (``email``, ``ssl``), ``urllib`` and
``dataclasses`` would cost more than the reads (as ``sidecar.extension.minihttp``, whose
rules this follows: one request per connection, ``Content-Length`` or chunked answers).

The endpoint and the token are found as the Python client finds them: ``http://HOST:PORT``
(default ``127.0.0.1`` and ``PARAMETERS_SECRETS_EXTENSION_HTTP_PORT``) or ``unix:///path``; the
first set of ``AWS_TOKEN``, ``AWS_SESSION_TOKEN``, ``AWS_CONTAINER_AUTHORIZATION_TOKEN``, where
``file://PATH`` means that file's contents, stripped (SPEC section 3).
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

TOKEN_VARIABLES = ("AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN")
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
PORT_VARIABLE = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"
TIMEOUT_VARIABLE = "PARAMETERS_SECRETS_EXTENSION_ENV_TIMEOUT_MILLIS"
DEFAULT_PORT = 2773
MAX_TOKEN_FILE_BYTES = 4096
_RETRY_PAUSE_SECS = 0.01  # between refused connections while the daemon binds
# RFC 3986's unreserved characters; everything else in a query value is percent-encoded (a
# space as %20: the daemon reads "+" as a plus sign, which secret names may hold).
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/")


class Unavailable(Exception):
    """No answer from the daemon in time, or no token to ask it with; ``str()`` says which."""


class Endpoint:
    """Where the daemon listens: ``host`` and ``port``, or a Unix socket's ``path``."""

    __slots__ = ("host", "path", "port")

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 path: str | None = None) -> None:
        self.host, self.port, self.path = host, port, path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Endpoint) and \
            (self.host, self.port, self.path) == (other.host, other.port, other.path)

    def __hash__(self) -> int:
        return hash((self.host, self.port, self.path))

    def __repr__(self) -> str:
        return f"Endpoint({str(self)!r})"

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """``http://HOST:PORT[/]`` or ``unix:///absolute/path``; ``ValueError`` says what is
    allowed."""
    allowed = "http://HOST:PORT (such as http://127.0.0.1:2773) or unix:///path/to/socket"
    text = text.strip()
    if text.startswith("unix:///"):
        path = text[len("unix://"):]
        if "?" in path or "#" in path or path.endswith("/"):
            raise ValueError(allowed)
        return Endpoint(path=path)
    if not text.startswith("http://"):
        raise ValueError(allowed)
    authority = text[len("http://"):].removesuffix("/")
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else ""
    else:
        host, _, port = authority.rpartition(":")
    if not host or "/" in host or "@" in host or not (port.isascii() and port.isdigit()) \
            or not 1 <= int(port) <= 65535 or any(c in authority for c in "?#/ "):
        raise ValueError(allowed)
    return Endpoint(host=host, port=int(port))


def default_endpoint(env: Mapping[str, str]) -> Endpoint:
    """127.0.0.1 on the daemon's port as the daemon reads it (a bad value: the default, as
    the Python client does; the daemon itself refuses to start with it)."""
    raw = env.get(PORT_VARIABLE, "").strip()
    port = int(raw) if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 65535 \
        else DEFAULT_PORT
    return Endpoint(port=port)


def find_token(env: Mapping[str, str]) -> str:
    """The token (SPEC section 3); ``Unavailable`` names the variables when none is set."""
    for name in TOKEN_VARIABLES:
        raw = env.get(name)
        if not raw:
            continue
        if not raw.startswith("file://"):
            return raw
        try:
            with open(raw[len("file://"):], "rb") as handle:
                return handle.read(MAX_TOKEN_FILE_BYTES).decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise Unavailable(f"{name} names a token file that cannot be read") from None
    raise Unavailable("no token to ask the daemon with: set one of " + ", ".join(TOKEN_VARIABLES))


def encode(value: str) -> str:
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in value.encode())


def query_string(query: list[tuple[str, str]]) -> str:
    return "&".join(f"{encode(key)}={encode(value)}" for key, value in query)


class Client:
    """GETs to the daemon, all within ``deadline`` (``time.monotonic()`` seconds)."""

    def __init__(self, endpoint: Endpoint, token: str, deadline: float, bound_ms: int) -> None:
        self.endpoint = endpoint
        self._token = token
        self._deadline = deadline
        self._bound_ms = bound_ms

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise Unavailable(f"the daemon at {self.endpoint} did not answer within "
                              f"{self._bound_ms} ms ({TIMEOUT_VARIABLE})")
        return left

    def close(self) -> None:
        """Nothing is kept open between requests (one request per connection)."""

    def _connect(self) -> socket.socket:
        endpoint = self.endpoint
        if endpoint.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = endpoint.path
        elif ":" in endpoint.host:
            sock, address = socket.socket(socket.AF_INET6, socket.SOCK_STREAM), \
                (endpoint.host, endpoint.port)
        elif endpoint.host.replace(".", "").isdigit():  # no getaddrinfo (and its idna codec)
            sock, address = socket.socket(socket.AF_INET, socket.SOCK_STREAM), \
                (endpoint.host, endpoint.port)
        else:
            return socket.create_connection((endpoint.host, endpoint.port), self._remaining())
        try:
            sock.settimeout(self._remaining())
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    def _request(self, target: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        lines = [f"GET {target} HTTP/1.1", "Host: localhost", "Connection: close",
                 *(f"{name}: {value}" for name, value in headers.items())]
        with self._connect() as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            return _answer(sock, self._remaining)

    def wait_ready(self) -> None:
        """Poll ``/ping`` until it answers ``healthy``; ``Unavailable`` at the deadline. A
        refused connection (nothing bound yet) is retried; a bound listener that is not yet
        serving holds the request until it serves."""
        while True:
            try:
                status, _, body = self._request("/ping", {})
                if status == 200 and body == b"healthy":
                    return
            except (OSError, ValueError):
                pass
            self._remaining()
            time.sleep(_RETRY_PAUSE_SECS)

    def get(self, path: str, query: list[tuple[str, str]]) -> tuple[int, str, bytes]:
        """Status, Content-Type and body of a GET; ``Unavailable`` when the daemon is gone."""
        target = path + ("?" + query_string(query) if query else "")
        try:
            return self._request(target, {TOKEN_HEADER: self._token})
        except (OSError, ValueError) as exc:
            self._remaining()
            raise Unavailable(f"the daemon at {self.endpoint} did not answer "
                              f"({type(exc).__name__})") from None


def _answer(sock: socket.socket, remaining: Callable[[], float]) -> tuple[int, str, bytes]:
    """Read the whole answer (the server closes after it: ``Connection: close``)."""
    data = b""
    while True:
        sock.settimeout(remaining())
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, separator, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if not separator or len(parts) < 2 or not parts[0].startswith("HTTP/") \
            or not parts[1].isdigit():
        raise ValueError("not an HTTP answer")
    headers = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    elif "content-length" in headers:
        body = body[:int(headers["content-length"])]
    return int(parts[1]), headers.get("content-type", ""), body


def _dechunk(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return body
        body += data[:size]
        data = data[size + 2:]
