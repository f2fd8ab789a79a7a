"""The HTTP face (SPEC sections 2-4): routing, token check, validation, rendering. Thin.

Every request reaches one handler, so that the checks run in the order the SPEC fixes
(forwarded, token, method, path, query) whatever the request looks like.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDictProxy

from sidecar.cache.resolver import Answer, Resolver
from sidecar.config.settings import DEFAULT_INBOUND_CONNECTIONS, DEFAULT_PATH_PREFIX, TOKEN_HEADERS
from sidecar.core import logs
from sidecar.core.errors import ApiError, bad_request
from sidecar.core.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from sidecar.core.metrics import Metrics
from sidecar.core.query import PATH_READ, S3_READ, SINGLE, Read, split_query
from sidecar.core.reads import (
    parameter_batch_read,
    parameter_read,
    path_read,
    s3_read,
    secret_batch_read,
    secret_read,
    secret_short_read,
)
from sidecar.core.reads import secret_path_read as _secret_path_read
from sidecar.http import render
from sidecar.http.admission import GuardedServer
from sidecar.http.clients import ClientGuard, client_text
from sidecar.http.token import TokenSource

MAX_QUERY_BYTES = 8 * 1024
# Connections beyond ``max_conn`` kept for /ping (the Agent allows two), so that a health check
# still answers while every other slot is busy.
PING_HEADROOM = 2
# Parsed request targets are remembered, so a repeated read skips parsing and reuses one Key
# object (identity makes the cache's dict lookups cheapest). Bounded in count and in length.
MEMO_ENTRIES = 4096
MEMO_TARGET_CHARS = 512
_JSON = "application/json"

Parser = Callable[[list[tuple[str, str]]], Read]
ROUTES: dict[str, Parser] = {
    "/systemsmanager/parameters/get": parameter_read,
    "/systemsmanager/parameters/get/": parameter_read,
    "/parameters/get": parameter_read,
    "/secretsmanager/get": secret_read,
    "/secrets/get": secret_short_read,
    "/systemsmanager/parameters/batch": parameter_batch_read,
    "/systemsmanager/parameters/path": path_read,
    "/secretsmanager/batch": secret_batch_read,
    "/s3/get": s3_read,
}


def error_response(error: ApiError) -> web.Response:
    return web.Response(status=error.status, body=error.body(), content_type=_JSON)


def answer_response(answer: Answer) -> web.Response:
    return web.Response(
        body=answer.body,
        headers={"Content-Type": _JSON, "X-Cache": answer.state, "Age": str(answer.age)},
    )


class Api:
    """Translates between HTTP and the resolver; owns nothing but the token."""

    def __init__(self, token: TokenSource, resolver: Resolver, metrics: Metrics | None = None,
                 *, token_headers: tuple[str, ...] = TOKEN_HEADERS,
                 path_prefix: str = DEFAULT_PATH_PREFIX,
                 max_busy: int = DEFAULT_INBOUND_CONNECTIONS,
                 client_guard: ClientGuard | None = None) -> None:
        self._token = token
        self._token_headers = token_headers
        self._path_prefix = path_prefix
        self._max_busy = max_busy  # requests being answered at once (the Agent's max_conn)
        self._guard = client_guard  # the allow-list, with a listener beyond loopback only
        self._busy = 0
        self._resolver = resolver
        self.metrics = metrics or resolver.metrics
        self._reads: dict[str, Read] = {}
        self._routes: dict[str, str] = {}  # request target -> route label (never the name)
        self._debug = logs.debug_on()  # the level is fixed at start; read it once
        self.shutting_down = False
        self.connection_gauges: Callable[[], dict[str, float]] = dict  # set by build_server

    def _authorised(self, headers: CIMultiDictProxy[str]) -> bool:
        for header in self._token_headers:
            given = headers.get(header)
            if given is not None:
                return self._token.matches(given)
        bearer = headers.get("Authorization")  # what Prometheus' authorization setting sends
        if bearer is not None and bearer[:7].lower() == "bearer ":
            return self._token.matches(bearer[7:].strip())
        return False

    def _occupy(self) -> None:
        """Take one of the ``max_conn`` slots for a request that waits (a cache hit never does:
        it is answered without yielding, so it holds no slot and is always served)."""
        if self._busy >= self._max_busy:
            raise ApiError(429, "TooManyConnections",
                           f"more than {self._max_busy} requests waiting at once (max_conn)")
        self._busy += 1

    def _parser(self, raw_path: str) -> Callable[[list[tuple[str, str]]], Read] | None:
        parser = ROUTES.get(raw_path)
        if parser is None and raw_path.startswith(self._path_prefix):
            raw_id = raw_path[len(self._path_prefix):]
            return lambda pairs: _secret_path_read(raw_id, pairs)
        return parser

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        # One coroutine for the whole request: the hit path is only checks, a dict lookup and
        # writing bytes, and every extra await level shows in its throughput.
        started = time.perf_counter() if self._debug else 0.0
        read: Read | None = None
        state: str | None = None
        try:
            outcome = self._admit(request)
            if isinstance(outcome, web.Response):
                response = outcome
            else:
                read = outcome
                if read.plain:
                    answer = None if read.refresh_now else self._resolver.hit(read.key)
                    if answer is None:
                        self._occupy()
                        try:
                            answer = await self._resolver.read(read.key, read.refresh_now)
                        finally:
                            self._busy -= 1
                    response = answer_response(answer)
                    state = answer.state
                else:
                    self._occupy()
                    try:
                        response = await self._extended(read)
                    finally:
                        self._busy -= 1
                    state = response.headers.get("X-Cache")
        except ApiError as exc:
            response = error_response(exc)
            # The traceback and the SDK exception behind it hold frames, responses and requests;
            # drop them now rather than leave reference cycles for the GC's rare full pass.
            exc.__traceback__ = exc.__context__ = None
        except Exception as exc:
            logs.error("request failed unexpectedly", error=type(exc).__name__)
            response = error_response(ApiError(500, "InternalFailure", "internal error"))
        target = request.raw_path
        route = self._routes.get(target) or self._route(request.rel_url.raw_path, target)
        self.metrics.requests[(route, response.status)] += 1
        if state is not None and read is not None:
            self.metrics.gets[(read.key.service, state)] += 1
        if self._debug:
            logs.debug("request", method=request.method, path=request.rel_url.raw_path[:256],
                       name=read.key.describe() if read else "", status=response.status,
                       cache=response.headers.get("X-Cache", "-"),
                       ms=round((time.perf_counter() - started) * 1000, 3))
        return response

    async def _extended(self, read: Read) -> web.Response:
        """Group reads, ``maxAge`` and transforms: off the hit path, same cache."""
        if read.kind == S3_READ:
            answer = await self._resolver.read(read.key, read.refresh_now, read.max_age)
            return web.Response(body=answer.body, headers={
                **dict(answer.meta), "X-Cache": answer.state, "Age": str(answer.age)})
        if read.kind in (SINGLE, PATH_READ):
            answer = await self._resolver.read(read.key, read.refresh_now, read.max_age)
            state, age = answer.state, answer.age
            if read.kind == PATH_READ:
                body, content_type = render.path(read, answer), _JSON
            elif read.transform is None and read.json_key is None:
                body, content_type = answer.body, _JSON
            else:
                body, content_type = render.single(read, answer)
        else:
            answers = await self._resolver.read_many(read.keys, read.refresh_now, read.max_age)
            body, content_type = render.batch(read, answers), _JSON
            state, age = render.group_state(read, answers)
        return web.Response(body=body, headers={"Content-Type": content_type, "X-Cache": state,
                                                "Age": str(age)})

    def _route(self, path: str, target: str) -> str:
        """The route label of a request: its path pattern, never the name it asks for."""
        if path in ROUTES or path in ("/ping", "/metrics"):
            route = path
        elif path.startswith(self._path_prefix):
            route = "/v1/{secretId}"  # a fixed label, whatever the configured prefix
        else:
            route = "other"
        if len(target) <= MEMO_TARGET_CHARS:
            if len(self._routes) >= MEMO_ENTRIES:
                self._routes.clear()
            self._routes[target] = route
        return route

    def _metrics_response(self) -> web.Response:
        cache = self._resolver.cache
        connections = self.connection_gauges
        self.metrics.gauges = lambda: {
            "cache_entries": len(cache), "cache_bytes": cache.bytes_held,
            "cache_max_entries": cache.max_items, "cache_max_bytes": cache.max_bytes,
            **connections()}
        return web.Response(body=self.metrics.exposition(),
                            headers={"Content-Type": METRICS_CONTENT_TYPE})

    def _admit(self, request: web.BaseRequest) -> Read | web.Response:
        """The SPEC's checks in the SPEC's order; the read to serve, or /ping's answer.
        Beyond loopback the client's network comes first (README, "Where it listens")."""
        if self._guard is not None and not self._guard.admits(request.transport):
            raise ApiError(403, "ClientNotAllowed", f"client {client_text(request.transport)} is "
                           "not in PARAMETERS_SECRETS_EXTENSION_ALLOWED_CLIENTS")
        headers = request.headers
        if "X-Forwarded-For" in headers:
            raise bad_request("Forwarded", "requests carrying X-Forwarded-For are refused")
        target = request.raw_path  # path and query, as sent
        read = self._reads.get(target)
        if read is None and request.rel_url.raw_path == "/ping":
            if request.method not in ("GET", "HEAD"):
                raise ApiError(405, "MethodNotAllowed", "only GET is supported")
            return web.Response(text="healthy")
        if not self._authorised(headers):
            raise ApiError(403, "BadToken", "missing or invalid X-Aws-Parameters-Secrets-Token")
        if request.method != "GET":
            raise ApiError(405, "MethodNotAllowed", "only GET is supported")
        if read is None and request.rel_url.raw_path == "/metrics":
            return self._metrics_response()
        if read is None:
            read = self._parse(request)
        elif request.body_exists or request.content_length:
            raise bad_request("InvalidRequest", "a GET request must not have a body")
        if self.shutting_down:
            raise ApiError(503, "ShuttingDown", "the daemon is shutting down")
        return read

    def _parse(self, request: web.BaseRequest) -> Read:
        """Route and validate a request target seen for the first time, and remember it."""
        parser = self._parser(request.rel_url.raw_path)
        if parser is None:
            raise ApiError(404, "NotFound", "no such path")
        if request.body_exists or request.content_length:
            raise bad_request("InvalidRequest", "a GET request must not have a body")
        raw_query = request.rel_url.raw_query_string
        if len(raw_query) > MAX_QUERY_BYTES:
            raise ApiError(414, "InvalidRequest",
                           f"the query string is longer than {MAX_QUERY_BYTES} bytes")
        read = parser(split_query(raw_query))
        target = request.raw_path
        if len(target) <= MEMO_TARGET_CHARS:
            if len(self._reads) >= MEMO_ENTRIES:
                self._reads.clear()
            self._reads[target] = read
        return read


def build_server(api: Api, max_connections: int, max_unsent_bytes: int) -> GuardedServer:
    """aiohttp's low-level server: every request goes straight to ``Api.handle``.

    ``max_connections`` is the Agent's ``max_conn``; ``PING_HEADROOM`` more are kept for /ping.
    ``max_unsent_bytes`` bounds the answer bytes all connections together hold unsent.

    The daemon routes by itself (the SPEC's check order needs that anyway), so aiohttp's
    Application, router and middleware machinery would only add time to every hit. Admission
    (connection cap, head and write deadlines, unsent bytes, idle timeout, size limits) is
    ``GuardedServer``'s.
    """
    handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]] = api.handle
    server = GuardedServer(handler, max_connections=max_connections + PING_HEADROOM,
                           max_unsent_bytes=max_unsent_bytes, metrics=api.metrics,
                           access_log=None)
    api.connection_gauges = server.gauges
    return server
