"""A fake Lambda Extensions API that behaves like Lambda where it matters, for tests and benches.

Like the Lambda runtime interface emulator, it answers client errors with 403 and a JSON body
``{"errorMessage", "errorType"}``. Everything the extension sends is recorded with its time.

- **INIT** ends only when the runtime and the extension have both called ``next`` once. The
  runtime is simulated: ready at once (a function whose INIT does nothing) unless
  ``runtime_ready_at_start`` is false, then when the test calls ``runtime_ready()``, or when a
  real process calls the runtime API's ``invocation/next`` (benchmarks). Invokes queued by
  ``invoke()`` are delivered only after INIT, the first one right after it.
- An invoke **completes** when the extension calls ``next`` again (``invokes_completed``).
- ``managed=True`` is Lambda Managed Instances: registering ``INVOKE`` is refused with 403
  ``Extension.InvalidEventType``.
- ``shutdown()`` sends SHUTDOWN with a deadline; ``kill_at_deadline(process)`` SIGKILLs the
  process if it is still alive then, as Lambda does.
- ``polling`` is set while a ``next`` long-poll is pending; ``stop()`` ends every connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
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
    managed: bool = False
    malformed_events: int = 0  # answer this many nexts with a body that is no event
    runtime_ready_at_start: bool = True
    registrations: list[Registration] = field(default_factory=list)
    refused_registrations: list[list[str]] = field(default_factory=list)
    errors: list[ErrorReport] = field(default_factory=list)
    next_calls: int = 0
    first_next_at: float | None = None
    runtime_ready_at: float | None = None
    init_ended_at: float | None = None
    invokes_delivered: int = 0
    invokes_completed: int = 0
    killed: bool = False

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._identifier = str(uuid.uuid4())
        self._polls: set[asyncio.Transport] = set()
        self.address = ""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.registered = threading.Event()
        self.polling = threading.Event()
        self.init_ended = threading.Event()
        self._stopping = False
        self._awaiting_ack = False
        self.started_at = time.monotonic()

    def start(self) -> FakeExtensionsApi:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the listener and every connection (a pending long-poll sees it drop)."""
        self._stopping = True
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
        for transport in list(self._polls):  # any that arrived while closing
            transport.abort()
        # Handlers still waiting (a long-poll, the runtime's never-answered next) end here,
        # rather than be reported as destroyed while pending when the process exits.
        pending = [task for task in asyncio.all_tasks(self._loop)
                   if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def send(self, event: dict[str, Any]) -> None:
        """Queue an event for the extension's next ``event/next``."""
        self._loop.call_soon_threadsafe(self._events.put_nowait, event)

    def invoke(self) -> None:
        self.send({"eventType": "INVOKE", "requestId": str(uuid.uuid4()),
                   "deadlineMs": int(time.time() * 1000) + 3000,
                   "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
                   "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-0-0"}})

    def runtime_ready(self) -> None:
        """The simulated runtime finished its INIT and called ``invocation/next``."""
        self._loop.call_soon_threadsafe(self._mark_runtime_ready)

    def _mark_runtime_ready(self) -> None:
        if self.runtime_ready_at is None:
            self.runtime_ready_at = time.monotonic()
            self._check_init_end()

    def _check_init_end(self) -> None:
        if self.init_ended_at is None and self.runtime_ready_at is not None \
                and self.first_next_at is not None:
            self.init_ended_at = max(self.runtime_ready_at, self.first_next_at)
            self._init_done.set()
            self.init_ended.set()

    def kill_at_deadline(self, pid: int, deadline: float) -> threading.Thread:
        """SIGKILL ``pid`` at ``deadline`` (wall clock) if it is still alive, as Lambda does."""
        def watch() -> None:
            time.sleep(max(0.0, deadline - time.time()))
            try:
                os.kill(pid, 0)
            except OSError:
                return
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = 0
            if done == 0:
                self.killed = True
                os.kill(pid, signal.SIGKILL)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        return thread

    def shutdown(self, reason: str = "spindown", window_ms: int = 2000) -> float:
        """SHUTDOWN with ``reason`` (Lambda's words vary in case: spindown, timeout, failure,
        SandboxTerminated) and a deadline ``window_ms`` from now, returned."""
        deadline = time.time() + window_ms / 1000
        self.send({"eventType": "SHUTDOWN", "shutdownReason": reason,
                   "deadlineMs": int(deadline * 1000)})
        return deadline

    # -- server -------------------------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._init_done = asyncio.Event()
        self._loop.run_until_complete(self._start())
        if self.runtime_ready_at_start:
            self._mark_runtime_ready()
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post(f"{PREFIX}/register", self._register)
        app.router.add_get(f"{PREFIX}/event/next", self._next)
        app.router.add_post(f"{PREFIX}/init/error", self._error)
        app.router.add_post(f"{PREFIX}/exit/error", self._error)
        app.router.add_get("/2018-06-01/runtime/invocation/next", self._runtime_next)
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
        if self.managed and "INVOKE" in events:
            self.refused_registrations.append(list(events))
            return self._client_error("INVOKE is not supported in Lambda Managed Instances",
                                      "Extension.InvalidEventType")
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
        if self._awaiting_ack:  # this call acknowledges the invoke it was last given
            self._awaiting_ack = False
            self.invokes_completed += 1
        if isinstance(request.transport, asyncio.Transport):
            self._polls.add(request.transport)
        if self._stopping:
            raise ConnectionResetError("the API is going away")
        if self.first_next_at is None:
            self.first_next_at = time.monotonic()
            self._check_init_end()
        if self.fail_next_with is not None:
            return web.json_response({"errorMessage": "injected", "errorType": "Fault"},
                                     status=self.fail_next_with)
        if self.malformed_events > 0:
            self.malformed_events -= 1
            return web.Response(text="not an event", content_type="application/json")
        self.polling.set()
        try:
            await self._init_done.wait()
            event = await self._events.get()
        finally:
            self.polling.clear()
        if event.get("eventType") == "INVOKE":
            self.invokes_delivered += 1
            self._awaiting_ack = True
        return web.Response(text=json.dumps(event), content_type="application/json",
                            headers={"Lambda-Extension-Event-Identifier": str(uuid.uuid4())})

    async def _runtime_next(self, request: web.Request) -> web.StreamResponse:
        """A real runtime process (benchmarks) saying its INIT is done; never answered."""
        self._mark_runtime_ready()
        if isinstance(request.transport, asyncio.Transport):
            self._polls.add(request.transport)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def _error(self, request: web.Request) -> web.Response:
        if not self._known(request):
            return self._client_error("missing or unknown extension identifier",
                                      "Extension.MissingExtensionIdentifier")
        phase = request.path.split("/")[-2]
        self.errors.append(ErrorReport(
            phase, request.headers.get("Lambda-Extension-Function-Error-Type", ""),
            await request.json(), request.headers.get("Lambda-Extension-Identifier", "")))
        return web.json_response({"status": "OK"}, status=202)
