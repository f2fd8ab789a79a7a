"""Start the real daemon the way users do (``python -m sidecar``) and talk to it over HTTP.

Output is collected in memory by a reader thread (never written to disk) so that tests can grep
it for values that must not be there.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(home: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """A minimal environment: nothing inherited that could reach real AWS or hold a token."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


class Process:
    """A child process whose combined output is kept in memory."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path = REPO) -> None:
        self.proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._lock:
                self._lines.append(raw.decode("utf-8", "replace"))

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def wait_for_output(self, needle: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared in the output")
            if self.proc.poll() is not None and needle not in self.output:
                self._reader.join(2)
                if needle in self.output:
                    return
                raise AssertionError(f"process exited ({self.proc.returncode}) before {needle!r}")
            time.sleep(0.02)

    def finish(self, timeout: float = 15.0) -> int:
        """Wait for the exit and for all output; returns the exit code."""
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def terminate(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.content = body
        self.text = body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Daemon(Process):
    """The daemon in standalone mode on a free port, ready when ``/ping`` answers."""

    def __init__(self, env: Mapping[str, str], token: str, port: int,
                 argv: Sequence[str] = ()) -> None:
        super().__init__([sys.executable, "-m", "sidecar", *argv], env)
        self.token = token
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.http = requests.Session()

    @classmethod
    def attach(cls, process: Process, token: str, port: int) -> Daemon:
        """Treat an already started process (say, a launcher script) as the daemon."""
        daemon = cls.__new__(cls)
        daemon.__dict__.update(process.__dict__)
        daemon.token, daemon.port = token, port
        daemon.base = f"http://127.0.0.1:{port}"
        daemon.http = requests.Session()
        return daemon

    def wait_ready(self, timeout: float = 20.0) -> Daemon:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.finish()
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output}")
            try:
                if requests.get(self.base + "/ping", timeout=1).text == "healthy":
                    return self
            except (requests.ConnectionError, requests.Timeout):
                # Refused before the bind; a timeout after it, while the daemon still imports
                # (the listener is bound first and queues connections meanwhile).
                pass
            if time.monotonic() > deadline:
                raise AssertionError("daemon never answered /ping")
            time.sleep(0.02)

    def get(self, path: str, token: str | None = "default", **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token == "default":
            token = self.token
        if token is not None:
            headers[TOKEN_HEADER] = token
        return self.http.get(self.base + path, headers=headers, timeout=30, **kwargs)

    def raw(self, path: str, method: str = "GET", token: str | None = "default",
            headers: Mapping[str, str] | None = None) -> RawResponse:
        """A request sent byte for byte as given (``requests`` would re-quote the path)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            sent = dict(headers or {})
            if token is not None:
                sent[TOKEN_HEADER] = self.token if token == "default" else token
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in sent.items():
                conn.putheader(name, value)
            conn.endheaders()
            response = conn.getresponse()
            return RawResponse(response.status, dict(response.getheaders()), response.read())
        finally:
            conn.close()

    def param(self, name: str, **query: str) -> requests.Response:
        return self.get("/systemsmanager/parameters/get", params={"name": name, **query})

    def secret(self, secret_id: str, **query: str) -> requests.Response:
        return self.get("/secretsmanager/get", params={"secretId": secret_id, **query})
