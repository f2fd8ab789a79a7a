"""Starts and stops the serving parts: listener, AWS clients, prefetch, graceful drain.

Used by both modes: standalone (``run_standalone``) and the Lambda extension loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Coroutine
from typing import Any

from aiobotocore.session import AioSession, get_session
from aiohttp import web

from sidecar.aws.clients import Clients
from sidecar.aws.source import Source
from sidecar.aws.upstream import Upstream
from sidecar.cache.resolver import Resolver
from sidecar.config.settings import Settings
from sidecar.core import logs
from sidecar.core.metrics import Metrics
from sidecar.http.api import Api, build_server
from sidecar.http.appconfig import AppConfigListener
from sidecar.http.clients import ClientGuard
from sidecar.http.listener import Listeners
from sidecar.http.token import TokenSource

# SPEC: exit within 2 s of the grace period's end; Lambda gives external extensions 2 s minus
# the runtime's 300 ms. In-flight reads get this long to finish before they are cut.
DRAIN_SECS = 1.2
DRAIN_POLL_SECS = 0.01
LISTEN_BACKLOG = 1024  # as listener.bind


# Every wait of start-up is bounded (review S3-12): botocore's own defaults would let an STS
# endpoint that accepts and never answers hold start-up for minutes (60 s reads, 3 attempts).
VALIDATE_SECS = 5.0
WARM_UP_SECS = 10.0
CLOSE_SECS = 0.5  # closing the AWS clients when start-up is abandoned
NO_CREDENTIALS = ("no AWS credentials found in the credential chain (environment, profile, "
                  "container or instance metadata): every read will fail with 500 "
                  "InternalFailure until credentials are provided")


class StartupError(Exception):
    """Start-up cannot go on; ``str(error)`` is the one line shown."""


async def validate_credentials(daemon: Daemon) -> None:
    """The Agent's ``validate_credentials``: STS GetCallerIdentity before serving, within
    ``VALIDATE_SECS``. A transient failure (a timeout included) is only a warning while
    ``ignore_transient_errors`` holds (the Agent's rule); anything else raises ``StartupError``.
    Missing credentials are never transient."""
    from sidecar.core.errors import ApiError

    try:
        async with asyncio.timeout(VALIDATE_SECS):
            await daemon.upstream.check_identity()
    except TimeoutError:
        error = ApiError(504, "UpstreamTimeout", f"STS did not answer within {VALIDATE_SECS:g} s",
                         transient=True)
    except ApiError as exc:
        error = exc
    else:
        logs.info("AWS credentials validated")
        return
    if error.transient and daemon.settings.ignore_transient_errors:
        logs.warn("AWS credentials could not be validated; starting anyway "
                  "(ignore_transient_errors)", error=error.code, reason=error.message)
        return
    await _close_quickly(daemon)
    raise StartupError(f"AWS credentials failed validation (validate_credentials): "
                       f"{error.code}: {error.message}")


async def _close_quickly(daemon: Daemon) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(daemon.upstream.close(), CLOSE_SECS)


def _source(settings: Settings, session: AioSession, metrics: Metrics) -> Source:
    """What the cache fetches from: AWS, or in local mode the file (README, Local mode)."""
    if settings.local_file:
        from sidecar.aws.local import LocalUpstream

        return LocalUpstream(settings.local_file, metrics)
    return Upstream(settings, session=session, metrics=metrics)


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        # Kept to ask it for credentials after the clients exist: it caches what it found, so
        # asking costs nothing then (see _report_missing_credentials).
        self._session = get_session()
        self.upstream = _source(settings, self._session, self.metrics)
        self.resolver = Resolver(settings, self.upstream, metrics=self.metrics)
        self.api = Api(TokenSource(settings.token, settings.token_file), self.resolver,
                       self.metrics, token_headers=settings.token_headers,
                       path_prefix=settings.path_prefix,
                       max_busy=settings.max_inbound_connections,
                       client_guard=ClientGuard(settings.bind_address, settings.allowed_clients)
                       if settings.bind_address else None)
        # Unsent answers may hold as much as the cache: the worst case is twice the byte bound.
        self.server = build_server(self.api, settings.max_inbound_connections,
                                   max_unsent_bytes=settings.cache_bytes)
        self._runner = web.ServerRunner(self.server, shutdown_timeout=DRAIN_SECS)
        self._warmup: asyncio.Task[None] | None = None
        self.prefetched: asyncio.Future[None] | None = None
        self.failure: BaseException | None = None
        self._listeners: Listeners | None = None
        # The AppConfig agent's port, same process and loop (README, "AppConfig (port 2772)").
        self.appconfig: AppConfigListener | None = None
        # AppConfig speaks to AWS itself: not in local mode, whose source is the file.
        if settings.appconfig.wanted and isinstance(self.upstream, Clients):
            self.appconfig = AppConfigListener(
                settings.appconfig, self.upstream, self.resolver.cache, self.resolver.clock,
                self.metrics, (settings.max_inbound_connections, settings.cache_bytes),
                DRAIN_SECS)

    async def start(self, listeners: Listeners) -> None:
        """Serve on every socket of ``listeners`` at once (one server: admission, token and
        limits are shared); create AWS clients and prefetch in the background.

        Prefetched keys are claimed before the first request is served, so that an early read
        of one joins its batch instead of making a call of its own.
        """
        loop = asyncio.get_running_loop()
        self.prefetched = self._begin_prefetch(loop)
        self._warmup = loop.create_task(self._warm_up())
        await self._runner.setup()
        # aiohttp listens again with its own backlog (128 by default): a burst of new
        # connections beyond it would wait for a SYN retransmit (1 s) instead of an eviction.
        self._listeners = listeners
        for sock in listeners.sockets:
            await web.SockSite(self._runner, sock, shutdown_timeout=DRAIN_SECS,
                               backlog=LISTEN_BACKLOG).start()
        await self._start_appconfig(listeners)
        for note in listeners.notes:
            logs.debug(note)
        if listeners.beyond_loopback:
            logs.warn(f"listening beyond loopback on {listeners.beyond_loopback}: plain HTTP, "
                      "served only to the allowed clients with the token",
                      allowed_clients=",".join(self.settings.allowed_clients))

    async def _start_appconfig(self, listeners: Listeners) -> None:
        if self.appconfig is None:
            if listeners.appconfig:  # local mode: the file holds no AppConfig data
                logs.warn("AppConfig is not served in local mode")
                for sock in listeners.appconfig:
                    sock.close()
                listeners.appconfig.clear()
            return
        await self.appconfig.start(listeners.appconfig, listeners.appconfig_problem)
        landed = self.appconfig.prefetch()
        if landed is not None and self.prefetched is not None:
            # One "prefetched" for both ports: INIT waits for both where it waits at all.
            self.prefetched = asyncio.ensure_future(_all(self.prefetched, landed))

    def _begin_prefetch(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        settings = self.settings
        if not (settings.prefetch or settings.prefetch_tags):
            done: asyncio.Future[None] = loop.create_future()
            done.set_result(None)
            return done
        if settings.prefetch_tags or settings.prefetch_jitter_secs or settings.config_file:
            # The Agent's prefetch: delayed, bounded by the cache buffer, by tag keys too.
            from sidecar.cache.tag_prefetch import prefetch

            return loop.create_task(prefetch(settings, self.resolver, self.upstream))
        return self.resolver.begin_prefetch(settings.prefetch)

    async def _warm_up(self) -> None:
        try:
            async with asyncio.timeout(WARM_UP_SECS):
                await self.upstream.start()
                await self._report_missing_credentials()
        except TimeoutError:
            # Clients are also created on first use: serving goes on, readers wait for them.
            logs.warn("AWS clients were not ready within the start-up bound; reads will wait "
                      "for them", bound_secs=WARM_UP_SECS)
            return
        except Exception as exc:
            # Readers get the reason as a 500 each; the daemon keeps serving /ping.
            self.failure = exc
            logs.error("AWS clients could not be created", error=type(exc).__name__)
            return
        # Everything loaded so far (modules, botocore's models) lives as long as the process:
        # keep it out of the garbage collector's passes, which otherwise walk it again and again
        # under load (a quarter of the hit path's time).
        gc.freeze()

    async def _report_missing_credentials(self) -> None:
        """One clear line at start-up when the credential chain found nothing (field report
        N12: otherwise only each read's 500 body says so). Creating the clients already walked
        the chain; the session kept the outcome, so this makes no call of its own unless the
        chain found nothing (then it walks it once more, within the warm-up's bound)."""
        if self.settings.credentials_file or self.settings.local_file:
            return  # its provider reports its own problems; local mode needs none
        if await self._session.get_credentials() is None:
            logs.error(NO_CREDENTIALS)

    async def ready(self) -> None:
        """Wait until the AWS clients exist; raises what stopped them."""
        if self._warmup is not None:
            await asyncio.shield(self._warmup)
        if self.failure is not None:
            raise self.failure

    async def stop(self, drain_secs: float = DRAIN_SECS) -> None:
        """Answer new reads 503, let in-flight ones finish (bounded), close the AWS clients."""
        self.api.shutting_down = True
        if self.appconfig is not None:
            self.appconfig.api.shutting_down = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_secs
        while (self.server.busy_connections() or (self.appconfig and self.appconfig.busy())) \
                and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_SECS)
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warmup
        if self.prefetched is not None and not self.prefetched.done():
            self.prefetched.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.prefetched
        await self._runner.cleanup()
        if self.appconfig is not None:
            await self.appconfig.stop()
        if self._listeners is not None:
            self._listeners.close()  # the Unix socket's file goes with it
        await self.resolver.close()
        await self.upstream.close()


async def _all(*waits: Awaitable[Any]) -> None:
    for wait in waits:
        await wait


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` until it ends (True; its exception is raised) or ``stop`` is set first
    (False; ``work`` is cancelled)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return False


async def run_standalone(settings: Settings, listeners: Listeners) -> None:
    """Serve until SIGTERM or SIGINT; keep serving for the grace period; then drain and return.

    The grace period is for the application beside the sidecar, which gets the same signal
    and may still read secrets while it shuts down. A second signal ends the grace at once.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    daemon = Daemon(settings)
    # (The Agent skips validation for file credentials too.) A signal ends start-up at once.
    if settings.validate_credentials and not (settings.credentials_file or settings.local_file) \
            and not await _unless_stopped(validate_credentials(daemon), stop):
        logs.info("stopped during start-up", reason="signal")
        await _close_quickly(daemon)
        return
    await daemon.start(listeners)
    logs.info("ready", address=listeners.describe(), mode="standalone")
    await stop.wait()
    if settings.shutdown_grace_secs:
        logs.info("shutting down after the grace period", reason="signal",
                  grace_secs=settings.shutdown_grace_secs)
        stop.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.shutdown_grace_secs)
    logs.info("shutting down", reason="signal")
    await daemon.stop()
    logs.info("stopped")
