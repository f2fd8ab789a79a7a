"""The Lambda event loop: serve, wait for events, shut down before the deadline.

Imported by ``extension`` only after the register call, because it pulls in aiohttp and
aiobotocore.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time

from sidecar import logs
from sidecar.config import Settings
from sidecar.daemon import Daemon
from sidecar.extension import ExtensionsApi, ExtensionsApiError

# Leave this much of the SHUTDOWN deadline for the process to exit after draining.
EXIT_MARGIN_SECS = 0.15


async def _shutdown(daemon: Daemon, deadline_ms: object) -> None:
    budget = 1.8
    if isinstance(deadline_ms, int | float):
        budget = deadline_ms / 1000 - time.time() - EXIT_MARGIN_SECS
    try:
        await asyncio.wait_for(daemon.stop(), timeout=max(0.05, budget))
    except TimeoutError:
        logs.warn("shutdown deadline reached before draining finished")


async def serve_lambda(settings: Settings, sock: socket.socket, api: ExtensionsApi) -> int:
    """Serve on the pre-bound socket until SHUTDOWN; the exit code is the return value."""
    daemon = Daemon(settings)
    await daemon.start(sock)
    logs.info("ready", address=f"127.0.0.1:{settings.port}", mode="lambda")
    loop = asyncio.get_running_loop()
    terminated = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, terminated.set)
    invokes = 0
    try:
        while True:
            next_event = asyncio.ensure_future(asyncio.to_thread(api.next_event))
            signalled = asyncio.ensure_future(terminated.wait())
            done, _ = await asyncio.wait({next_event, signalled},
                                         return_when=asyncio.FIRST_COMPLETED)
            if signalled in done:
                logs.info("shutting down", reason="signal")
                await _shutdown(daemon, None)
                return 0
            signalled.cancel()
            event = next_event.result()
            kind = str(event.get("eventType", "")).upper()
            if kind == "SHUTDOWN":
                logs.info("shutting down", reason=str(event.get("shutdownReason", "")).lower(),
                          invokes=invokes)
                await _shutdown(daemon, event.get("deadlineMs"))
                logs.info("stopped")
                return 0
            invokes += 1
            logs.debug("event", type=kind or "unknown", request_id=event.get("requestId", ""))
    except ExtensionsApiError as exc:
        # A 5xx or a lost connection means the environment is going away: exit, never spin.
        logs.error("the Lambda Extensions API failed; exiting", error=str(exc))
        await _shutdown(daemon, None)
        return 1
    except Exception as exc:
        logs.error("the extension failed; exiting", error=type(exc).__name__)
        with contextlib.suppress(ExtensionsApiError):
            api.report("exit", "Crash", f"extension failed: {type(exc).__name__}")
        await _shutdown(daemon, None)
        return 1
