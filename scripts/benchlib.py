"""Shared pieces of the benchmark scripts: a fast fake AWS, daemon processes, measurements."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
_JSON = "application/x-amz-json-1.1"
# Runs the daemon with uvloop made unimportable, so it falls back to asyncio's own loop.
NO_UVLOOP = ("import runpy, sys; sys.modules['uvloop'] = None; "
             "runpy.run_module('sidecar', run_name='__main__', alter_sys=True)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: int, argv: list[str]) -> list[str]:
    """``argv`` pinned to one core where taskset exists and the machine has that core."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > cpu:
        return ["taskset", "-c", str(cpu), *argv]
    return argv


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


@dataclass
class FakeAws:
    """A fast fake SSM and Secrets Manager: every name exists (with a value of ``value_size``
    bytes) unless it contains ``/missing/``. With ``quota`` > 0 it allows that many calls per
    second in all (a token bucket, as AWS throttles an account) and throttles beyond."""

    value_size: int = 300
    quota: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    _tokens: float = 0.0
    _last: float = field(default_factory=time.monotonic)

    def reset(self) -> None:
        self.calls.clear()
        self.throttled = 0
        self._tokens = self.quota

    def _allowed(self) -> bool:
        if self.quota <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(self.quota, self._tokens + (now - self._last) * self.quota)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def _parameter(self, name: str) -> dict[str, Any]:
        kind = "SecureString" if "secure" in name else "String"
        return {"Name": name, "Type": kind, "Value": "v" * self.value_size, "Version": 1,
                "LastModifiedDate": 1700000000.0, "DataType": "text",
                "ARN": f"arn:aws:ssm:us-east-1:123456789012:parameter{name}"}

    @staticmethod
    def _error(code: str, message: str) -> web.Response:
        return web.Response(status=400, content_type=_JSON,
                            text=json.dumps({"__type": code, "message": message}))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        api = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        self.calls[api] += 1
        if not self._allowed():
            self.throttled += 1
            return self._error("ThrottlingException", "Rate exceeded")
        if api == "GetParameters":
            names = body.get("Names", [])
            found = [self._parameter(n.split(":")[0]) for n in names if "/missing/" not in n]
            invalid = [n for n in names if "/missing/" in n]
            return web.Response(content_type=_JSON, text=json.dumps(
                {"Parameters": found, "InvalidParameters": invalid}))
        if api == "BatchGetSecretValue":
            ids = body.get("SecretIdList", [])
            return web.Response(content_type=_JSON, text=json.dumps({
                "SecretValues": [self._secret(i) for i in ids if "/missing/" not in i],
                "Errors": [{"SecretId": i, "ErrorCode": "ResourceNotFoundException",
                            "Message": "not found"} for i in ids if "/missing/" in i]}))
        name = body.get("Name") or body.get("SecretId") or ""
        if "/missing/" in name:
            code = "ParameterNotFound" if api == "GetParameter" else "ResourceNotFoundException"
            return self._error(code, "not found")
        if api == "GetSecretValue":
            return web.Response(content_type=_JSON, text=json.dumps(self._secret(name)))
        return web.Response(content_type=_JSON,
                            text=json.dumps({"Parameter": self._parameter(name)}))

    def _secret(self, name: str) -> dict[str, Any]:
        return {"ARN": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf",
                "Name": name, "VersionId": "v1", "SecretString": "s" * self.value_size,
                "VersionStages": ["AWSCURRENT"], "CreatedDate": 1700000000.0}

    async def start(self, tls: ssl.SSLContext | None = None) -> tuple[web.AppRunner, str]:
        """Serve on a free port: plain HTTP, or HTTPS with ``tls`` (a server context)."""
        self.reset()
        app = web.Application()
        app.router.add_post("/", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
        return runner, f"{'https' if tls else 'http'}://127.0.0.1:{port}"


class FakeAwsThread:
    """``FakeAws`` on its own event loop in a thread, for synchronous callers."""

    def __init__(self, tls: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        self.aws = FakeAws(**kwargs)
        self._tls = tls
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self.url = ""
        threading.Thread(target=self._run, daemon=True).start()
        self._started.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        _, self.url = self._loop.run_until_complete(self.aws.start(self._tls))
        self._started.set()
        self._loop.run_forever()


def daemon_env(upstream_url: str, port: int, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp",
            "AWS_ENDPOINT_URL": upstream_url, "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_TOKEN": TOKEN,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port),
            "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "error",
            "PARAMETERS_SECRETS_EXTENSION_SHUTDOWN_GRACE_SECS": "0", **extra}


def start_daemon(env: dict[str, str], cpu: int | None = None,
                 uvloop: bool = True) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "sidecar"] if uvloop else [sys.executable, "-c", NO_UVLOOP]
    if cpu is not None:
        argv = pinned(cpu, argv)
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    wait_ping(int(env["PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"]), process)
    return process


def wait_ping(port: int, process: subprocess.Popen[bytes] | None = None,
              timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if conn.recv(1024).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"nothing answered /ping on port {port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def burst(port: int, paths: list[str], limit: int) -> Counter[int]:
    """GET every path with at most ``limit`` in flight; counts of each status."""
    statuses: Counter[int] = Counter()
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector, headers={TOKEN_HEADER: TOKEN}) as s:
        async def one(path: str) -> None:
            async with s.get(f"http://127.0.0.1:{port}{path}") as response:
                await response.read()
                statuses[response.status] += 1

        await asyncio.gather(*(one(path) for path in paths))
    return statuses


def parameter_path(name: str) -> str:
    return f"/systemsmanager/parameters/get?name={name}"
