"""The ``event/next`` loop on a thread of its own: INVOKEs acknowledged at once, SHUTDOWN or a
failure of the API handed to the async side."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sidecar.core import fatal
from sidecar.extension.api import ExtensionsApi, ExtensionsApiError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing before the register call
if TYPE_CHECKING:
    from typing import Any

    Event = dict[str, Any]

MAX_MALFORMED_EVENTS = 5


class EventPump:
    """Calls ``event/next`` from a daemon thread, for ever: INVOKEs are acknowledged at once by
    the next call; SHUTDOWN, or a failure of the API, is handed to ``on_end`` (set by the
    async side when it is ready; kept until then). Empty or malformed answers are retried with
    a growing pause and end the pump after a few, so the loop never spins.

    The first ``event/next`` ends this extension's INIT. ``start(hold_secs)`` delays it until
    ``release()`` or until ``hold_secs`` have passed, whichever comes first (the bound: a start-up
    that hangs must not hold INIT until Lambda's own INIT timeout).
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
        self._released = threading.Event()
        self._hold_until = 0.0

    def on_each_invoke(self, hook: Callable[[Event], None]) -> None:
        """Called from the pump's thread after each INVOKE is acknowledged."""
        self._on_invoke = hook

    def start(self, hold_secs: float = 0.0) -> None:
        """Start calling ``event/next``: at once, or after ``release()`` (``hold_secs`` at most)."""
        with self._lock:
            if self.started:
                return
            self.started = True
        self._hold_until = time.monotonic() + hold_secs
        if hold_secs <= 0:
            self._released.set()
        threading.Thread(target=self._run, args=(hold_secs,), name="event-next",
                         daemon=True).start()

    def release(self) -> None:
        """End the hold: the first ``event/next`` (the end of INIT) goes out now."""
        self._released.set()

    def hold_left(self) -> float:
        """Seconds until the bound ends the hold (0 when it is over)."""
        return max(0.0, self._hold_until - time.monotonic())

    @property
    def holding(self) -> bool:
        """Started, but the first ``event/next`` is still held back."""
        return self.started and not self._released.is_set()

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

    def _run(self, hold_secs: float) -> None:
        if not self._released.wait(hold_secs):
            self._released.set()
            from sidecar.core import logs

            logs.warn("INIT wait bound reached before the daemon served; INIT ends now",
                      bound_ms=round(hold_secs * 1000))
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
                        from sidecar.core import logs

                        logs.error("invoke hook failed", error=type(exc).__name__)
                continue
            malformed += 1
            from sidecar.core import logs

            logs.warn("unexpected answer from event/next", event_type=kind[:40] or "(none)")
            if malformed >= MAX_MALFORMED_EVENTS:
                self._finish("malformed", f"{malformed} malformed events in a row")
                return
            time.sleep(min(0.05 * 2 ** malformed, 1.0))


def report_failure(api: ExtensionsApi, pump: EventPump, message: str) -> None:
    """``init/error`` while Lambda has not sent this extension an event, else ``exit/error``."""
    phase = "exit" if pump.events_seen else "init"
    fatal.fatal_line(message)
    try:
        api.report(phase, "Crash" if phase == "exit" else "InitFailed", message)
    except ExtensionsApiError as exc:
        fatal.fatal_line(f"could not report the {phase} error to Lambda: {exc}")
