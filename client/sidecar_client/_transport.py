"""One keep-alive HTTP connection per thread to the daemon on 127.0.0.1, or on its Unix socket.

The token and port are found the way the daemon finds them. ``PARAMETERS_SECRETS_SIDECAR_ENDPOINT``
(or ``Transport(endpoint=...)``) set to ``unix:///path`` reads over the daemon's Unix domain
socket instead (README, "Where it listens"). A refused connection is retried
for a short while (``STARTUP_WAIT_SECS``): a function's INIT code may run before an extension
has started listening. A keep-alive connection the daemon closed while idle is reopened once
(reads are idempotent GETs). Nothing else is retried: the daemon already retries AWS.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from typing import Any
from urllib.parse import urlencode

from sidecar_client.errors import BadToken, DaemonUnavailable, GetParameterError, from_response

TOKEN_VARIABLES = ("AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN")
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
DEFAULT_PORT = 2773
ENDPOINT_VARIABLE = "PARAMETERS_SECRETS_SIDECAR_ENDPOINT"
UNIX_SCHEME = "unix://"
STARTUP_WAIT_SECS = 2.0
TIMEOUT_SECS = 5.0
MAX_TOKEN_FILE_BYTES = 4096


def find_token(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    for name in TOKEN_VARIABLES:
        raw = env.get(name)
        if not raw:
            continue
        if raw.startswith("file://"):
            path = raw[len("file://"):]
            try:
                with open(path, "rb") as handle:
                    return handle.read(MAX_TOKEN_FILE_BYTES).decode("utf-8").strip()
            except (OSError, UnicodeDecodeError):
                raise BadToken(f"{name} names a token file that cannot be read",
                               "BadToken") from None
        return raw
    raise BadToken("no token: set one of " + ", ".join(TOKEN_VARIABLES), "BadToken")


def find_port(environ: dict[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    raw = env.get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "").strip()
    return int(raw) if raw.isdigit() else DEFAULT_PORT


def find_endpoint(environ: dict[str, str] | None = None) -> str | None:
    """The Unix socket path ``PARAMETERS_SECRETS_SIDECAR_ENDPOINT`` names (``unix:///path``), or
    None when it is unset; raises ``ValueError`` for anything else."""
    env = os.environ if environ is None else environ
    raw = env.get(ENDPOINT_VARIABLE, "").strip()
    return unix_path(raw, ENDPOINT_VARIABLE) if raw else None


def unix_path(endpoint: str, source: str = "endpoint") -> str:
    """``/path`` from ``unix:///path``; raises ``ValueError`` naming ``source`` otherwise."""
    if not endpoint.startswith(UNIX_SCHEME + "/"):
        raise ValueError(f"{source} must be unix:///absolute/path/to/socket; it is "
                         f"{endpoint[:64]!r}")
    return endpoint[len(UNIX_SCHEME):]


class UnixConnection(http.client.HTTPConnection):
    """``http.client`` over a Unix domain socket (the Host header says ``localhost``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class Transport:
    def __init__(self, port: int | None = None, token: str | None = None,
                 timeout: float = TIMEOUT_SECS, startup_wait: float = STARTUP_WAIT_SECS,
                 endpoint: str | None = None) -> None:
        self._port = port
        self._socket_path = unix_path(endpoint) if endpoint else None
        self._token = token
        self.timeout = timeout
        self.startup_wait = startup_wait
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        path = self._socket_path or (None if self._port else find_endpoint())
        if path is not None:
            return self._unix_connection(path)
        port = self._port or find_port()
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if isinstance(conn, UnixConnection):
            conn.close()
            conn = None
        if conn is None or conn.port != port:  # the configured port may change (tests)
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _unix_connection(self, path: str) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if not isinstance(conn, UnixConnection) or conn.socket_path != path:
            if conn is not None:
                conn.close()
            conn = UnixConnection(path, self.timeout)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def get(self, path: str, query: list[tuple[str, str]]) -> Response:
        target = path + ("?" + urlencode(query) if query else "")
        headers = {TOKEN_HEADER: self._token or find_token()}
        deadline = time.monotonic() + self.startup_wait
        reopened = False
        while True:
            conn = self._connection()
            try:
                conn.request("GET", target, headers=headers)
                answer = conn.getresponse()
                body = answer.read()
                return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()},
                                body)
            except (ConnectionRefusedError, FileNotFoundError):
                # (No socket file yet: a Unix socket's daemon that has not started either.)
                self._drop()
                if time.monotonic() >= deadline:
                    where = f"unix://{conn.socket_path}" if isinstance(conn, UnixConnection) \
                        else f"127.0.0.1:{conn.port}"
                    raise DaemonUnavailable(f"nothing listens on {where} (is the daemon "
                                            "running?)", "DaemonUnavailable") from None
                time.sleep(0.02)
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as exc:
                self._drop()
                if reopened:
                    raise DaemonUnavailable(f"the daemon closed the connection "
                                            f"({type(exc).__name__})",
                                            "DaemonUnavailable") from None
                reopened = True  # an idle keep-alive connection the daemon had closed
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                raise DaemonUnavailable(f"the daemon did not answer ({type(exc).__name__})",
                                        "DaemonUnavailable") from None

    def read(self, path: str, query: list[tuple[str, str]]) -> Response:
        """A GET whose non-200 answer becomes the matching typed error."""
        response = self.get(path, query)
        if response.status == 200:
            return response
        try:
            document = response.json()
            code, message = str(document.get("__type", "")), str(document.get("message", ""))
        except (ValueError, AttributeError):
            code, message = "", f"HTTP {response.status}"
        error: GetParameterError = from_response(response.status, code, message)
        raise error
