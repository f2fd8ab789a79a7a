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
- With ``check_port``, register records whether the port accepts, and the first ``next``
  whether the daemon there answers ``/ping`` at once (``serving_at_first_next``).
- For benchmarks, a real runtime: ``invoke_function(payload)`` queues an invoke for the runtime
  (its ``invocation/next``) and the extension alike, as Lambda sends both; the runtime's
  ``/response`` is recorded in ``responses`` with its time. ``on_register`` and ``on_init_end``
  are called on the API's thread at those moments (Lambda starts the runtime once every
  extension has registered; a CPU model changes the sandbox's quota when INIT ends).
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
from collections.abc import Callable
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
    with_extension: bool = True  # False: INIT ends when the runtime is ready (a baseline)
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
    serving_at_first_next: bool | None = None
    on_register: Callable[[], None] | None = None
    on_init_end: Callable[[], None] | None = None
    responses: list[tuple[str, float]] = field(default_factory=list)

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
        self._probe: asyncio.Future[None] | None = None
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

    def invoke(self, request_id: str | None = None) -> None:
        self.send({"eventType": "INVOKE", "requestId": request_id or str(uuid.uuid4()),
                   "deadlineMs": int(time.time() * 1000) + 3000,
                   "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
                   "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-0-0"}})

    def invoke_function(self, payload: dict[str, Any], extension: bool = True) -> str:
        """Queue an invoke for the runtime (and the extension, if it registered for them);
        the request id is returned. Delivered after INIT, in order."""
        request_id = str(uuid.uuid4())
        self._loop.call_soon_threadsafe(self._invocations.put_nowait, (request_id, payload))
        if extension:
            self.invoke(request_id)
        return request_id

    def runtime_ready(self) -> None:
        """The simulated runtime finished its INIT and called ``invocation/next``."""
        self._loop.call_soon_threadsafe(self._mark_runtime_ready)

    def _mark_runtime_ready(self) -> None:
        if self.runtime_ready_at is None:
            self.runtime_ready_at = time.monotonic()
            self._check_init_end()

    def _check_init_end(self) -> None:
        if self.init_ended_at is None and self.runtime_ready_at is not None \
                and (self.first_next_at is not None or not self.with_extension):
            self.init_ended_at = max(self.runtime_ready_at, self.first_next_at or 0.0)
            if self.on_init_end is not None:
                self.on_init_end()
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
        self._invocations: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
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
        app.router.add_post("/2018-06-01/runtime/invocation/{request_id}/response",
                            self._runtime_response)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        self._runner = runner
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.address = f"127.0.0.1:{runner.addresses[0][1]}"

    @staticmethod
    def _client_error(message: str, error_type: str) -> web.Response:
        return web.json_response({"errorMessage": message, "errorType": error_type}, status=403)

    async def _probe_serving(self) -> None:
        """Does the daemon answer ``/ping`` at once? (It does only if it was already serving.)"""
        assert self.check_port is not None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.check_port), 0.15)
            writer.write(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(12), 0.15)
            writer.close()
            self.serving_at_first_next = answer.startswith(b"HTTP/1.1 200")
        except (OSError, TimeoutError):
            self.serving_at_first_next = False

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
        if self.on_register is not None:
            self.on_register()
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
            if self.check_port is not None:  # beside the answer, which it must not delay
                self._probe = asyncio.ensure_future(self._probe_serving())
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
        """A real runtime process (benchmarks): the first call says its INIT is done; each
        call gets the next ``invoke_function`` payload once INIT is over."""
        self._mark_runtime_ready()
        if isinstance(request.transport, asyncio.Transport):
            self._polls.add(request.transport)
        await self._init_done.wait()
        request_id, payload = await self._invocations.get()
        return web.json_response(payload, headers={
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 60_000),
            "Lambda-Runtime-Invoked-Function-Arn":
                "arn:aws:lambda:us-east-1:123456789012:function:f"})

    async def _runtime_response(self, request: web.Request) -> web.Response:
        await request.read()  # (a few bytes) then recorded: the runtime may be killed next
        self.responses.append((request.match_info["request_id"], time.monotonic()))
        return web.json_response({"status": "OK"}, status=202)

    async def _error(self, request: web.Request) -> web.Response:
        if not self._known(request):
            return self._client_error("missing or unknown extension identifier",
                                      "Extension.MissingExtensionIdentifier")
        phase = request.path.split("/")[-2]
        self.errors.append(ErrorReport(
            phase, request.headers.get("Lambda-Extension-Function-Error-Type", ""),
            await request.json(), request.headers.get("Lambda-Extension-Identifier", "")))
        return web.json_response({"status": "OK"}, status=202)
