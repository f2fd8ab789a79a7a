"""Lambda mode: the Extensions API lifecycle (SPEC section 6). Knows nothing about caching.

Lambda starts the function's runtime only after every extension has registered, so the time from
exec to the register call is added to every cold start. Hence the order: read config, bind the
listener, register, and only then import aiohttp/aiobotocore and start serving on the socket that
was already listening (a client that connects meanwhile waits instead of being refused). Until
register, only the standard library and the stdlib-only config module are loaded.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from typing import Any

from sidecar import NAME, config, logs
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

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None,
                 timeout: float | None = 10.0) -> tuple[int, dict[str, str], bytes]:
        sent = dict(headers or {})
        if self.identifier:
            sent["Lambda-Extension-Identifier"] = self.identifier
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            conn.request(method, f"/{API_VERSION}/extension/{path}", body=payload, headers=sent)
            response = conn.getresponse()
            data = response.read()
            status = response.status
            answer = {k.lower(): v for k, v in response.getheaders()}
        except (OSError, http.client.HTTPException) as exc:
            raise ExtensionsApiError(f"{path}: {type(exc).__name__}") from None
        finally:
            conn.close()
        if status >= 300:
            raise ExtensionsApiError(f"{path}: HTTP {status} {_error_type(data)}")
        return status, answer, data

    def register(self) -> dict[str, Any]:
        _, headers, data = self._request(
            "POST", "register", {"events": ["INVOKE", "SHUTDOWN"]},
            {"Lambda-Extension-Name": self.name},
        )
        identifier = headers.get("lambda-extension-identifier")
        if not identifier:
            raise ExtensionsApiError("register: no Lambda-Extension-Identifier in the answer")
        self.identifier = identifier
        return _json(data)

    def next_event(self) -> dict[str, Any]:
        """Block until Lambda sends the next event (no client time-out, by design)."""
        return _json(self._request("GET", "event/next", timeout=None)[2])

    def report(self, phase: str, reason: str, message: str) -> None:
        """``init/error`` or ``exit/error``; Lambda then ends the environment."""
        error_type = f"Extension.{reason}"
        self._request("POST", f"{phase}/error", {"errorMessage": message, "errorType": error_type},
                      {"Lambda-Extension-Function-Error-Type": error_type})


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error_type(data: bytes) -> str:
    return str(_json(data).get("errorType", ""))[:100]


def _fail_init(api: ExtensionsApi, reason: str, message: str) -> None:
    """Tell Lambda why init failed (registering first, as the API requires)."""
    logs.fatal_line(message)
    try:
        if api.identifier is None:
            api.register()
        api.report("init", reason, message)
    except ExtensionsApiError as exc:
        logs.fatal_line(f"could not report the init error to Lambda: {exc}")


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
        api.register()
    except ExtensionsApiError as exc:
        logs.fatal_line(f"could not register with the Lambda Extensions API: {exc}")
        return 1
    registered_ms = round((time.monotonic() - started) * 1000, 1)

    logs.setup(settings.log_level, settings.log_format)
    for warning in warnings:
        logs.warn(warning)
    logs.info("starting", mode="lambda", extension=name, register_ms=registered_ms,
              **settings.describe())

    from sidecar.lambda_loop import serve_lambda
    from sidecar.runloop import run

    return run(serve_lambda(settings, sock, api))
