"""The Lambda side of serving: start the daemon, wait for SHUTDOWN (or a signal), drain in time.

Imported by ``lifecycle`` only after the register call, because it pulls in aiohttp and
aiobotocore.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from typing import Any

from sidecar.config.settings import Settings
from sidecar.core import logs
from sidecar.core.metrics import EmfWriter
from sidecar.daemon import Daemon
from sidecar.extension.api import ExtensionsApi
from sidecar.extension.pump import EventPump, report_failure
from sidecar.http.listener import Listeners

# Leave this much of the SHUTDOWN deadline for the process to exit after draining.
EXIT_MARGIN_SECS = 0.15
# Without a deadline (a signal, a lost API): SIGTERM must end the process within 1 s.
SIGNAL_BUDGET_SECS = 0.7


async def _shutdown(daemon: Daemon, deadline_ms: object) -> None:
    budget = SIGNAL_BUDGET_SECS
    if isinstance(deadline_ms, int | float) and not isinstance(deadline_ms, bool):
        budget = deadline_ms / 1000 - time.time() - EXIT_MARGIN_SECS
    budget = max(0.05, budget)
    try:
        await asyncio.wait_for(daemon.stop(drain_secs=budget * 0.7), timeout=budget)
    except TimeoutError:
        logs.warn("shutdown deadline reached before draining finished")


async def serve_lambda(settings: Settings, listeners: Listeners, api: ExtensionsApi,
                       pump: EventPump, wait_for_prefetch: bool = False) -> int:
    """Serve on the pre-bound sockets until SHUTDOWN; the exit code is the return value.

    Where the pump holds the first ``event/next`` (``policy.plan``), it is released once the
    daemon serves with its AWS clients made and, with ``wait_for_prefetch``, the prefetch has
    landed; the pump's own bound ends the hold otherwise.
    """
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[tuple[str, Any]] = loop.create_future()

    def settle(kind: str, detail: Any) -> None:
        if not ended.done():
            ended.set_result((kind, detail))

    def end(kind: str, detail: Any) -> None:
        loop.call_soon_threadsafe(settle, kind, detail)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, end, "signal", None)
    daemon = Daemon(settings)
    emf: EmfWriter | None = None
    if settings.metrics_emf:
        emf = EmfWriter(daemon.metrics, settings.metrics_namespace,
                        os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "unknown"),
                        lambda line: print(line, flush=True))
        # Deltas at each invoke where something changed, written on the loop's thread.
        writer = emf

        def after_invoke(_event: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(writer.flush)

        pump.on_each_invoke(after_invoke)
    await daemon.start(listeners)
    logs.info("ready", address=listeners.describe(), mode="lambda")
    try:
        await daemon.ready()
    except Exception as exc:
        report_failure(api, pump, f"AWS clients could not be created: {type(exc).__name__}")
        await _shutdown(daemon, None)
        return 1
    # Start-up is over (lean.import_serving turned the collector off for it): what is loaded
    # lives as long as the process, so it is frozen out of the collector's passes for good.
    gc.freeze()
    gc.enable()
    if pump.holding and wait_for_prefetch and daemon.prefetched is not None:
        try:
            await asyncio.wait_for(asyncio.shield(daemon.prefetched), pump.hold_left())
        except TimeoutError:  # the prefetch goes on after INIT
            if pump.holding:  # (else the pump's own bound ended it, and said so)
                logs.warn("INIT wait bound reached before the prefetch landed; INIT ends now",
                          bound_ms=settings.prefetch_wait_ms)
    pump.release()
    pump.on_end(end)
    kind, detail = await ended
    if kind == "shutdown":
        logs.info("shutting down", reason=str(detail.get("shutdownReason", "")).lower(),
                  invokes=pump.invokes)
        if emf is not None:
            emf.flush(always=True)
        await _shutdown(daemon, detail.get("deadlineMs"))
        logs.info("stopped")
        return 0
    if kind == "signal":
        logs.info("shutting down", reason="signal")
        await _shutdown(daemon, None)
        return 0
    if kind == "malformed":
        report_failure(api, pump, f"event/next gave {detail}")
        await _shutdown(daemon, None)
        return 1
    # A 5xx or a lost connection means the environment is going away: exit, never spin.
    logs.error("the Lambda Extensions API failed; exiting", error=str(detail))
    await _shutdown(daemon, None)
    return 1
