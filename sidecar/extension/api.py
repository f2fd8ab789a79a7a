"""The Lambda Extensions API client (register, event/next, init/exit errors): standard library
only, blocking, so that it works before anything heavy is imported (DESIGN: Lambda extension
facts)."""

from __future__ import annotations

from sidecar.core import fatal
from sidecar.extension import minihttp

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing before the register call
if TYPE_CHECKING:
    from typing import Any

API_VERSION = "2020-01-01"


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


def fail_init(api: ExtensionsApi, reason: str, message: str) -> None:
    """Tell Lambda why init failed (registering first, as the API requires)."""
    fatal.fatal_line(message)
    try:
        if api.identifier is None:
            api.register()
        api.report("init", reason, message)
    except ExtensionsApiError as exc:
        fatal.fatal_line(f"could not report the init error to Lambda: {exc}")
