"""Starts and stops the serving parts: listener, AWS clients, prefetch, graceful drain.

Used by both modes: standalone (``run_standalone``) and the Lambda extension loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket

from aiohttp import web

from sidecar import logs
from sidecar.config import Settings
from sidecar.resolver import Resolver
from sidecar.server import Api, build_server
from sidecar.upstream import Upstream

# SPEC: exit within 2 s of SIGTERM; Lambda gives external extensions 2 s minus the runtime's
# 300 ms. In-flight reads get this long to finish before they are cut.
DRAIN_SECS = 1.2


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.upstream = Upstream(settings)
        self.resolver = Resolver(settings, self.upstream)
        self.api = Api(settings.token, self.resolver)
        self._runner = web.ServerRunner(build_server(self.api), shutdown_timeout=DRAIN_SECS)
        self._warmup: asyncio.Task[None] | None = None

    async def start(self, sock: socket.socket) -> None:
        """Serve on ``sock`` at once; create AWS clients and prefetch in the background."""
        await self._runner.setup()
        await web.SockSite(self._runner, sock, shutdown_timeout=DRAIN_SECS).start()
        self._warmup = asyncio.get_running_loop().create_task(self._warm_up())

    async def _warm_up(self) -> None:
        try:
            await self.upstream.start()
        except Exception as exc:
            # Readers get the reason as a 500 each; the daemon keeps serving /ping and stays up.
            logs.error("AWS clients could not be created", error=type(exc).__name__)
            return
        # Everything loaded so far (modules, botocore's models) lives as long as the process:
        # keep it out of the garbage collector's passes, which otherwise walk it again and again
        # under load (a quarter of the hit path's time).
        gc.freeze()
        if self.settings.prefetch:
            await self.resolver.prefetch(self.settings.prefetch)

    async def stop(self) -> None:
        """Refuse new reads, let in-flight ones finish (bounded), close the AWS clients."""
        self.api.shutting_down = True
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warmup
        await self._runner.cleanup()
        await self.resolver.close()
        await self.upstream.close()


async def run_standalone(settings: Settings, sock: socket.socket) -> None:
    """Serve until SIGTERM or SIGINT, then drain and return."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    daemon = Daemon(settings)
    await daemon.start(sock)
    logs.info("ready", address=f"127.0.0.1:{settings.port}", mode="standalone")
    await stop.wait()
    logs.info("shutting down", reason="signal")
    await daemon.stop()
    logs.info("stopped")
