"""The AWS AppConfig Agent's HTTP API on its own port (README, "AppConfig (port 2772)").

``GET /applications/{application}/environments/{environment}/configurations/{profile}`` answers
the configuration's bytes with AWS's ``Content-Type``, ``Configuration-Version`` and
``Version-Label``; feature flag profiles answer ``?flag=`` subsets and multi-variant flags
chosen from ``Context: key=value`` headers (``core.flags``). No token, as the AWS agent's Lambda
extension; the main listener's admission and limits (``GuardedServer``). Errors are the agent's:
AWS's status and error document passed through, the agent's ``InvalidParameters`` document for
an unknown flag.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from cachetools import LRUCache

from sidecar.aws.appconfig import AppConfigData, AppConfigError, note, set_log_level
from sidecar.aws.clients import Clients
from sidecar.cache.clock import Clock
from sidecar.cache.store import Cache
from sidecar.config.appconfig import AppConfigSettings, ConfigId, parse_path
from sidecar.core import flags
from sidecar.core.errors import ApiError
from sidecar.core.metrics import Metrics
from sidecar.core.query import split_query
from sidecar.http.admission import GuardedServer
from sidecar.http.appconfig_store import LABEL, VERSION, Config, Configurations

ROUTE = "/applications/{application}/environments/{environment}/configurations/{profile}"
MAX_QUERY_BYTES = 8 * 1024
MAX_CONTEXT_ENTRIES = 64
PARSED_PROFILES = 64  # feature flag profiles kept parsed (re-read when their bytes change)
LISTEN_BACKLOG = 1024
_JSON = "application/json"
# The agent's answer to an unknown flag (AppConfig Data's BadRequestException document).
NO_SUCH_FLAG = "Configuration data missing one or more flag values"


def error_response(error: ApiError) -> web.Response:
    """AWS's error document and status as the agent passes them on; ours in the same shape."""
    document = error.document if isinstance(error, AppConfigError) else {"Message": error.message}
    return web.Response(status=error.status, body=json.dumps(document).encode(),
                        headers={"Content-Type": _JSON, "X-Amzn-ErrorType": error.code})


def invalid_parameters(problems: dict[str, str], message: str) -> AppConfigError:
    document = {"Message": message, "Reason": "InvalidParameters", "Details": {
        "InvalidParameters": {name: {"Problem": problem} for name, problem in problems.items()}}}
    return AppConfigError(ApiError(400, "BadRequestException", message), 400, document)


def context_of(values: list[str]) -> dict[str, str]:
    """``Context`` headers (repeated, or comma-separated entries) as a mapping; raises 400."""
    found: dict[str, str] = {}
    for value in values:
        for entry in value.split(","):
            if not entry.strip():
                continue
            name, equals, given = entry.partition("=")
            if not equals or not name.strip() or len(found) >= MAX_CONTEXT_ENTRIES:
                raise ApiError(400, "BadRequestException",
                               f"a Context header entry must be key=value (at most "
                               f"{MAX_CONTEXT_ENTRIES} entries)")
            found[name.strip()] = given.strip()
    return found


class AppConfigApi:
    """One handler for every request on the AppConfig port."""

    def __init__(self, store: Configurations, metrics: Metrics) -> None:
        self._store = store
        self.metrics = metrics
        self._parsed: LRUCache[Any, tuple[bytes, flags.Flags]] = LRUCache(PARSED_PROFILES)
        self._paths: dict[str, ConfigId] = {}
        self.shutting_down = False

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        # The route's label, never the names it asks for (metrics' fixed vocabulary).
        route = ROUTE if request.rel_url.raw_path.startswith("/applications/") else "other"
        try:
            response = await self._answer(request, self._config(request))
        except ApiError as exc:
            response = error_response(exc)
            exc.__traceback__ = exc.__context__ = None  # no frames kept alive by the answer
        except Exception as exc:
            note(logging.ERROR, "AppConfig request failed unexpectedly",
                 error=type(exc).__name__)
            response = error_response(ApiError(500, "InternalFailure", "internal error"))
        self.metrics.requests[(route, response.status)] += 1
        return response

    def _config(self, request: web.BaseRequest) -> ConfigId:
        """The checks in the main port's order, then the configuration the path names."""
        if "X-Forwarded-For" in request.headers:
            raise ApiError(400, "Forwarded", "requests carrying X-Forwarded-For are refused")
        if request.method not in ("GET", "HEAD"):
            raise ApiError(405, "MethodNotAllowed", "only GET is supported")
        raw = request.rel_url.raw_path
        config = self._paths.get(raw)
        if config is None:
            config = parse_path(raw)
            if config is None:
                raise ApiError(404, "NotFound", "no such path: /applications/<application>/"
                               "environments/<environment>/configurations/<profile>")
            if len(self._paths) >= 4096:
                self._paths.clear()
            self._paths[raw] = config
        if request.body_exists or request.content_length:
            raise ApiError(400, "BadRequestException", "a GET request must not have a body")
        return config

    async def _answer(self, request: web.BaseRequest, config: ConfigId) -> web.Response:
        wanted = self._flags(request.rel_url.raw_query_string)
        if self.shutting_down:
            raise ApiError(503, "ShuttingDown", "the daemon is shutting down")
        found = self._store.hit(config) or await self._store.read(config)
        self.metrics.gets[("appconfig", found.state)] += 1
        body, content_type = found.body, found.content_type
        if wanted or flags.is_ion_flags(content_type):
            body, content_type = self._flag_answer(found, wanted, request), _JSON
        headers = {"Content-Type": content_type, "X-Cache": found.state, "Age": str(found.age)}
        headers.update((name, value) for name, value in found.meta if name in (VERSION, LABEL))
        return web.Response(body=body, headers=headers)

    @staticmethod
    def _flags(raw_query: str) -> list[str]:
        if len(raw_query) > MAX_QUERY_BYTES:
            raise ApiError(414, "BadRequestException",
                           f"the query string is longer than {MAX_QUERY_BYTES} bytes")
        names: list[str] = []
        for name, value in split_query(raw_query):
            if name != "flag":
                raise ApiError(400, "BadRequestException",
                               f"unknown query parameter {name[:64]!r}: only flag is accepted")
            if not value:
                raise ApiError(400, "BadRequestException", "flag must name a flag")
            names.append(value)
        return list(dict.fromkeys(names))

    def _flag_answer(self, found: Config, wanted: list[str], request: web.BaseRequest) -> bytes:
        parsed = self._parsed.get(found.key)
        if parsed is None or parsed[0] is not found.body:
            try:
                parsed = (found.body, flags.read(found.body, found.content_type))
            except flags.FlagError as exc:
                if flags.is_ion_flags(found.content_type):  # AWS's content, unreadable here
                    raise ApiError(500, "InternalFailure", str(exc)) from None
                raise invalid_parameters({"flag": "NotFeatureFlags"}, str(exc)) from None
            self._parsed[found.key] = parsed
        profile = parsed[1]
        unknown = profile.unknown(wanted)
        if unknown:
            raise invalid_parameters(dict.fromkeys(unknown, "NoSuchFlag"), NO_SUCH_FLAG)
        chosen = profile.choose(context_of(request.headers.getall("Context", [])),
                                wanted or None)
        return flags.render(chosen[wanted[0]] if len(wanted) == 1 else chosen)


class AppConfigListener:
    """The AppConfig port: its server, store and polling state, started and stopped with the
    daemon (one event loop, one shutdown)."""

    def __init__(self, settings: AppConfigSettings, clients: Clients, cache: Cache, clock: Clock,
                 metrics: Metrics, limits: tuple[int, int], drain_secs: float) -> None:
        """``limits``: the main listener's connection cap and unsent-bytes bound, used here too."""
        self.settings = settings
        set_log_level(settings.log_level)
        self.data = AppConfigData(clients, self.settings, clock)
        self.store = Configurations(self.settings, self.data, cache, clock, metrics)
        self.api = AppConfigApi(self.store, metrics)
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]] = self.api.handle
        self.server = GuardedServer(handler, max_connections=limits[0],
                                    max_unsent_bytes=limits[1], metrics=metrics,
                                    access_log=None)
        self._runner = web.ServerRunner(self.server, shutdown_timeout=drain_secs)
        self._drain_secs = drain_secs
        self.serving = False

    async def start(self, sockets: list[socket.socket], problem: str | None) -> None:
        """Serve on ``sockets`` (bound before anything else, ``listener.bind``); none: the
        port was taken, ``problem`` says how (one WARN line, and no AppConfig port)."""
        if not sockets:
            note(logging.WARNING, "AppConfig port not served: " + (problem or "not bound"),
                 port=self.settings.port)
            return
        await self._runner.setup()
        for sock in sockets:
            await web.SockSite(self._runner, sock, shutdown_timeout=self._drain_secs,
                               backlog=LISTEN_BACKLOG).start()
        self.serving = True
        note(logging.INFO, "AppConfig listener ready", address=f"127.0.0.1:{self.settings.port}",
             poll_interval_secs=self.settings.poll_interval_secs)

    def prefetch(self) -> Awaitable[Any] | None:
        if not self.serving or not self.settings.prefetch:
            return None
        return self.store.prefetch(self.settings.prefetch)

    def busy(self) -> int:
        return self.server.busy_connections()

    async def stop(self) -> None:
        if self.serving:
            await self._runner.cleanup()
        await self.store.close()
