"""``exec --standalone``: the daemon's own code, inside this process, for this process only.

It serves on a loopback port the kernel picks, with a random token that is never shown, on
an event loop in a thread; ``exec`` reads through it as it would through a daemon beside it,
so every rule of the HTTP API (group reads, ``jsonKey``, errors) is the daemon's own. It takes
the daemon's settings from the environment, and its AWS credentials, region and endpoints by
botocore's rules (``AWS_REGION``, ``AWS_ENDPOINT_URL``, ...).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sidecar.envref.client import Endpoint

if TYPE_CHECKING:
    from sidecar.config.settings import Settings
    from sidecar.http.listener import Listeners

# Listeners and prefetch are the standalone daemon's business, not this private one's.
_DAEMON_ONLY = ("PARAMETERS_SECRETS_EXTENSION_UNIX_SOCKET", "PARAMETERS_SECRETS_EXTENSION_BIND",
                "PARAMETERS_SECRETS_EXTENSION_ALLOWED_CLIENTS",
                "PARAMETERS_SECRETS_EXTENSION_PREFETCH", "PARAMETERS_SECRETS_EXTENSION_LOCAL")
_LEVEL_VARIABLES = ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "AWS_LAMBDA_LOG_LEVEL")
_START_TIMEOUT_SECS = 60.0


class StartFailed(Exception):
    """The in-process daemon cannot start; ``str()`` is the one line to show."""


class InProcessDaemon:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.token = secrets.token_urlsafe(32)
        self._env = {name: value for name, value in env.items()
                     if not name.startswith(_DAEMON_ONLY)}
        self._env["AWS_TOKEN"] = self.token  # the first token variable: it wins
        self._env["PARAMETERS_SECRETS_EXTENSION_APPCONFIG"] = "false"  # no port 2772 here
        self._env.pop("AWS_LAMBDA_RUNTIME_API", None)  # never the Lambda extension
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._failure: str | None = None
        self.endpoint = Endpoint()

    def start(self) -> Endpoint:
        """Serve; returns once the AWS clients exist. ``StartFailed`` says why it cannot."""
        from sidecar.config.settings import ConfigError, load
        from sidecar.core import logs
        from sidecar.http.listener import BACKLOG, Listeners

        try:
            settings, _ = load(self._env)
        except ConfigError as exc:
            raise StartFailed(str(exc)) from None
        if settings.region is None:
            import botocore.session

            if not botocore.session.get_session().get_config_variable("region"):
                raise StartFailed("--standalone reads AWS itself and needs a region: set "
                                  "AWS_REGION (or a region in the profile)")
        # Quiet unless asked: this process's output is the program's.
        level = settings.log_level if any(self._env.get(v) for v in _LEVEL_VARIABLES) else "warn"
        logs.setup(level, settings.log_format)
        sock = socket.create_server(("127.0.0.1", 0), backlog=BACKLOG)  # the kernel picks
        self.endpoint = Endpoint(port=int(sock.getsockname()[1]))
        listeners = Listeners()
        listeners.add(sock, f"127.0.0.1:{self.endpoint.port}")
        self._thread = threading.Thread(target=self._serve, args=(settings, listeners),
                                        name="in-process-daemon", daemon=True)
        self._thread.start()
        if not self._started.wait(_START_TIMEOUT_SECS):
            raise StartFailed("the in-process daemon did not start within "
                              f"{_START_TIMEOUT_SECS:.0f} s")
        if self._failure is not None:
            raise StartFailed(self._failure)
        return self.endpoint

    def _serve(self, settings: Settings, listeners: Listeners) -> None:
        from sidecar.daemon import Daemon

        async def begin() -> Daemon:
            daemon = Daemon(settings)  # aiohttp's server wants the running loop
            await daemon.start(listeners)
            await daemon.ready()
            return daemon

        loop = asyncio.new_event_loop()
        self._loop = loop
        daemon = None
        try:
            daemon = loop.run_until_complete(begin())
        except Exception as exc:
            self._failure = f"the in-process daemon could not start: {type(exc).__name__}"
        finally:
            self._started.set()
        if daemon is not None:
            loop.run_forever()
            loop.run_until_complete(daemon.stop(drain_secs=0))
        loop.close()

    def stop(self) -> None:
        """Stop serving and close the AWS clients (bounded)."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
