"""A fake Lambda Extensions API following the documented protocol, for tests and benchmarks.

Like the Lambda runtime interface emulator, it answers client errors with 403 and a JSON body
``{"errorMessage", "errorType"}``. Events are queued by the test; everything the extension sends
is recorded with the time it arrived.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PREFIX = "/2020-01-01/extension"


@dataclass
class Registration:
    name: str
    events: list[str]
    headers: dict[str, str]
    at: float
    port_open: bool | None


@dataclass
class ErrorReport:
    phase: str
    error_type_header: str
    body: dict[str, Any]
    identifier: str


@dataclass
class FakeExtensionsApi:
    check_port: int | None = None
    fail_next_with: int | None = None
    registrations: list[Registration] = field(default_factory=list)
    errors: list[ErrorReport] = field(default_factory=list)
    next_calls: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._identifier = str(uuid.uuid4())
        self._polls: set[asyncio.Transport] = set()
        self.address = ""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.registered = threading.Event()

    def start(self) -> FakeExtensionsApi:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the listener and every connection (a pending long-poll sees it drop)."""
        if not self._loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        future.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _close(self) -> None:
        # Pending long-polls are cut first: a connection left open after the loop stops
        # would hang its client for ever, which is not what "the API went away" means.
        for transport in list(self._polls):
            transport.abort()
        await self._runner.cleanup()

    def send(self, event: dict[str, Any]) -> None:
        """Queue an event for the extension's next ``event/next``."""
        self._loop.call_soon_threadsafe(self._events.put_nowait, event)

    def invoke(self) -> None:
        self.send({"eventType": "INVOKE", "requestId": str(uuid.uuid4()),
                   "deadlineMs": int(time.time() * 1000) + 3000,
                   "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
                   "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-0-0"}})

    def shutdown(self, reason: str = "spindown", window_ms: int = 2000) -> float:
        deadline = time.time() + window_ms / 1000
        self.send({"eventType": "SHUTDOWN", "shutdownReason": reason,
                   "deadlineMs": int(deadline * 1000)})
        return deadline

    # -- server -------------------------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post(f"{PREFIX}/register", self._register)
        app.router.add_get(f"{PREFIX}/event/next", self._next)
        app.router.add_post(f"{PREFIX}/init/error", self._error)
        app.router.add_post(f"{PREFIX}/exit/error", self._error)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        self._runner = runner
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.address = f"127.0.0.1:{runner.addresses[0][1]}"

    @staticmethod
    def _client_error(message: str, error_type: str) -> web.Response:
        return web.json_response({"errorMessage": message, "errorType": error_type}, status=403)

    def _port_open(self) -> bool | None:
        if self.check_port is None:
            return None
        try:
            with socket.create_connection(("127.0.0.1", self.check_port), timeout=0.5):
                return True
        except OSError:
            return False

    async def _register(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        name = request.headers.get("Lambda-Extension-Name", "")
        try:
            body = await request.json()
        except ValueError:
            return self._client_error("invalid body", "InvalidRequest")
        events = body.get("events") if isinstance(body, dict) else None
        if not name or not isinstance(events, list):
            return self._client_error("name and events are required", "InvalidRequest")
        if set(events) - {"INVOKE", "SHUTDOWN"}:
            return self._client_error("unknown event", "InvalidRequest")
        if self.registrations:
            return self._client_error("already registered", "Extension.AlreadyRegistered")
        self.registrations.append(Registration(name, events, dict(request.headers), at,
                                               self._port_open()))
        self.registered.set()
        return web.json_response(
            {"functionName": "f", "functionVersion": "$LATEST", "handler": "app.handler"},
            headers={"Lambda-Extension-Identifier": self._identifier})

    def _known(self, request: web.Request) -> bool:
        return request.headers.get("Lambda-Extension-Identifier") == self._identifier

    async def _next(self, request: web.Request) -> web.StreamResponse:
        if not self._known(request):
            return self._client_error("missing or unknown extension identifier",
                                      "Extension.MissingExtensionIdentifier")
        self.next_calls += 1
        if isinstance(request.transport, asyncio.Transport):
            self._polls.add(request.transport)
        if self.fail_next_with is not None:
            return web.json_response({"errorMessage": "injected", "errorType": "Fault"},
                                     status=self.fail_next_with)
        event = await self._events.get()
        return web.Response(text=json.dumps(event), content_type="application/json",
                            headers={"Lambda-Extension-Event-Identifier": str(uuid.uuid4())})

    async def _error(self, request: web.Request) -> web.Response:
        if not self._known(request):
            return self._client_error("missing or unknown extension identifier",
                                      "Extension.MissingExtensionIdentifier")
        phase = request.path.split("/")[-2]
        self.errors.append(ErrorReport(
            phase, request.headers.get("Lambda-Extension-Function-Error-Type", ""),
            await request.json(), request.headers.get("Lambda-Extension-Identifier", "")))
        return web.json_response({"status": "OK"}, status=202)
