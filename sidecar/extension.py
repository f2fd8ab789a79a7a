"""Lambda mode: the Extensions API lifecycle (SPEC section 6). Knows nothing about caching.

Lambda ends INIT only when the runtime and every extension have called ``event/next``, and it
bills that time on every cold start. So: read config, bind the listener, register, and call
``event/next`` at once from a thread (``EventPump``), before aiohttp and aiobotocore are even
imported. Serving comes up meanwhile on the socket that was already listening (a client that
connects early waits in the listen queue instead of being refused). INVOKE events are
acknowledged at once by the pump's next call, so an invoke never waits for the extension.

Where INIT is off the request path (provisioned concurrency, SnapStart) and a prefetch list is
set, the first ``event/next`` waits for the prefetch instead, bounded, so the first invoke's
reads are hits.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from sidecar import NAME, config, fatal, minihttp
from sidecar.listener import bind

API_VERSION = "2020-01-01"
NAME_VARIABLE = "PARAMETERS_SECRETS_SIDECAR_EXTENSION_NAME"  # set by the layer's launcher


class ExtensionsApiError(Exception):
    """The Extensions API answered with an error status, or could not be reached."""


class ExtensionsApi:
    """A blocking, standard-library client: it must work before anything heavy is imported."""

    def __init__(self, address: str, name: str) -> None:
        host, _, port = address.rpartition(":")
        self._host, self._port = (host, int(port)) if host and port.isdigit() else (address, 80)
        self.name = name
        self.identifier: str | None = None
        self.events: list[str] = []

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None, timeout: float | None = 10.0,
                 raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        sent = dict(headers or {})
        if self.identifier:
            sent["Lambda-Extension-Identifier"] = self.identifier
        payload = raw
        if raw is not None:
            sent["Content-Type"] = "application/json"
        if body is not None:
            import json  # not before the first event/next: it costs INIT time (re)

            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        try:
            status, answer, data = minihttp.request(
                self._host, self._port, method, f"/{API_VERSION}/extension/{path}", sent,
                payload, timeout)
        except minihttp.HttpError as exc:
            raise ExtensionsApiError(f"{path}: {exc}") from None
        if status >= 300:
            raise ExtensionsApiError(f"{path}: HTTP {status} {_error_type(data)}")
        return status, answer, data

    def register(self, managed_instances: bool = False) -> dict[str, Any]:
        """Register for INVOKE and SHUTDOWN; SHUTDOWN only in Lambda Managed Instances, which
        refuse INVOKE to external extensions (and if a register is refused for that reason
        anyway, register again without it)."""
        events = ["SHUTDOWN"] if managed_instances else ["INVOKE", "SHUTDOWN"]
        try:
            return self._register(events)
        except ExtensionsApiError as exc:
            if "INVOKE" in events and "InvalidEventType" in str(exc):
                self.events = ["SHUTDOWN"]
                return self._register(["SHUTDOWN"])
            raise

    def _register(self, events: list[str]) -> dict[str, Any]:
        self.events = events
        _, headers, data = self._request(
            "POST", "register", None, {"Lambda-Extension-Name": self.name},
            raw=('{"events":[' + ",".join(f'"{event}"' for event in events) + "]}").encode())
        identifier = headers.get("lambda-extension-identifier")
        if not identifier:
            raise ExtensionsApiError("register: no Lambda-Extension-Identifier in the answer")
        self.identifier = identifier
        # The body (function name, version, handler) is not needed: the identifier is all.
        return {"size": len(data)}

    def next_event(self) -> dict[str, Any]:
        """Block until Lambda sends the next event (no client time-out, by design)."""
        return _json(self._request("GET", "event/next", timeout=None)[2])

    def report(self, phase: str, reason: str, message: str) -> None:
        """``init/error`` or ``exit/error``; Lambda then ends the environment."""
        error_type = f"Extension.{reason}"
        self._request("POST", f"{phase}/error", {"errorMessage": message, "errorType": error_type},
                      {"Lambda-Extension-Function-Error-Type": error_type})


def _json(data: bytes) -> dict[str, Any]:
    import json

    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error_type(data: bytes) -> str:
    return str(_json(data).get("errorType", ""))[:100]


MAX_MALFORMED_EVENTS = 5

Event = dict[str, Any]


class EventPump:
    """Calls ``event/next`` from a daemon thread, for ever: INVOKEs are acknowledged at once by
    the next call; SHUTDOWN, or a failure of the API, is handed to ``on_end`` (set by the
    async side when it is ready; kept until then). Empty or malformed answers are retried with
    a growing pause and end the pump after a few, so the loop never spins.
    """

    def __init__(self, api: ExtensionsApi,
                 on_invoke: Callable[[Event], None] | None = None) -> None:
        self._api = api
        self._on_invoke = on_invoke
        self._lock = threading.Lock()
        self._end: tuple[str, Any] | None = None
        self._on_end: Callable[[str, Any], None] | None = None
        self.invokes = 0
        self.events_seen = 0
        self.started = False

    def on_each_invoke(self, hook: Callable[[Event], None]) -> None:
        """Called from the pump's thread after each INVOKE is acknowledged."""
        self._on_invoke = hook

    def start(self) -> None:
        if not self.started:
            self.started = True
            threading.Thread(target=self._run, name="event-next", daemon=True).start()

    def on_end(self, callback: Callable[[str, Any], None]) -> None:
        with self._lock:
            self._on_end = callback
            end = self._end
        if end is not None:
            callback(*end)

    def _finish(self, kind: str, detail: Any) -> None:
        with self._lock:
            self._end = (kind, detail)
            callback = self._on_end
        if callback is not None:
            callback(kind, detail)

    def _run(self) -> None:
        malformed = 0
        while True:
            try:
                event = self._api.next_event()
            except ExtensionsApiError as exc:
                self._finish("error", str(exc))
                return
            self.events_seen += 1
            kind = str(event.get("eventType", "")).upper()
            if kind == "SHUTDOWN":
                self._finish("shutdown", event)
                return
            if kind == "INVOKE":
                malformed = 0
                self.invokes += 1
                if self._on_invoke is not None:
                    try:
                        self._on_invoke(event)
                    except Exception as exc:  # a hook must never stop the acknowledgements
                        from sidecar import logs

                        logs.error("invoke hook failed", error=type(exc).__name__)
                continue
            malformed += 1
            from sidecar import logs

            logs.warn("unexpected answer from event/next", event_type=kind[:40] or "(none)")
            if malformed >= MAX_MALFORMED_EVENTS:
                self._finish("malformed", f"{malformed} malformed events in a row")
                return
            time.sleep(min(0.05 * 2 ** malformed, 1.0))


def _fail_init(api: ExtensionsApi, reason: str, message: str) -> None:
    """Tell Lambda why init failed (registering first, as the API requires)."""
    fatal.fatal_line(message)
    try:
        if api.identifier is None:
            api.register()
        api.report("init", reason, message)
    except ExtensionsApiError as exc:
        fatal.fatal_line(f"could not report the init error to Lambda: {exc}")


def extension_name() -> str:
    """The launcher's file name: Lambda registers each extension under it."""
    configured = os.environ.get(NAME_VARIABLE)
    if configured:
        return configured
    if getattr(sys, "frozen", False):  # the self-contained binary is its own launcher
        path = os.environ.get("STATICX_PROG_PATH") or sys.argv[0]
        return os.path.basename(path) or NAME
    return NAME


def run_extension() -> int:
    started = time.monotonic()
    name = extension_name()
    api = ExtensionsApi(os.environ["AWS_LAMBDA_RUNTIME_API"], name)
    try:
        settings, warnings = config.load()
    except config.ConfigError as exc:
        _fail_init(api, "ConfigInvalid", str(exc))
        return 2
    try:
        sock = bind(settings.port)
    except OSError as exc:
        _fail_init(api, "ListenFailed", f"cannot listen on 127.0.0.1:{settings.port} "
                                        f"(PARAMETERS_SECRETS_EXTENSION_HTTP_PORT): {exc.strerror}")
        return 1
    try:
        api.register(settings.managed_instances())
    except ExtensionsApiError as exc:
        fatal.fatal_line(f"could not register with the Lambda Extensions API: {exc}")
        return 1
    registered_ms = round((time.monotonic() - started) * 1000, 1)
    pump = EventPump(api)
    hold = settings.prefetch_wait and bool(settings.prefetch)
    if not hold:
        pump.start()  # INIT is done, as far as this extension is concerned
    # Only now what the register path could do without: logging, and the hardening (before
    # any secret is in memory: nothing has been fetched yet).
    from sidecar import hardening, logs

    missed = hardening.harden()
    logs.setup(settings.log_level, settings.log_format)
    if missed:
        logs.warn("could not apply: " + ", ".join(missed))
    for warning in warnings:
        logs.warn(warning)
    logs.info("starting", mode="lambda", extension=name, register_ms=registered_ms,
              events=",".join(api.events), init_type=settings.initialization_type or "unknown",
              **settings.describe(), **hardening.state())
    try:
        from sidecar.lambda_loop import serve_lambda
        from sidecar.runloop import run

        return run(serve_lambda(settings, sock, api, pump))
    except Exception as exc:
        report_failure(api, pump, f"the extension failed: {type(exc).__name__}")
        return 1


def report_failure(api: ExtensionsApi, pump: EventPump, message: str) -> None:
    """``init/error`` while Lambda has not sent this extension an event, else ``exit/error``."""
    phase = "exit" if pump.events_seen else "init"
    fatal.fatal_line(message)
    try:
        api.report(phase, "Crash" if phase == "exit" else "InitFailed", message)
    except ExtensionsApiError as exc:
        fatal.fatal_line(f"could not report the {phase} error to Lambda: {exc}")
