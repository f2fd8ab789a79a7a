"""A fault-injecting HTTP proxy between the daemon and moto.

It counts upstream calls per API and per name, tracks concurrency, and applies rules matched on
the requested name: throttle, 5xx, delay, drop the connection, or a rate quota. It runs its own
event loop in a thread so that synchronous tests can drive it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

_AWS_JSON = "application/x-amz-json-1.1"


@dataclass(eq=False)
class Rule:
    """``gate`` holds every matching call until ``FaultProxy.release``; ``html500`` answers
    500 with an HTML page, as a load balancer or proxy in front of AWS may."""

    match: str
    # throttle | error500 | html500 | error | delay | drop | gate | item_error (a batch answer
    # with the matching ids moved from SecretValues to Errors, with ``code``)
    kind: str
    seconds: float = 0.0
    status: int = 400  # for kind "error"
    code: str = "AccessDeniedException"  # for kind "error"
    until: float = float("inf")  # time.monotonic() deadline
    apis: tuple[str, ...] = ()
    held: int = 0  # for kind "gate": calls waiting at it now
    passed: int = 0  # for kind "gate": calls let through so far
    opened: threading.Event = field(default_factory=threading.Event)

    def applies(self, api: str, names: list[str]) -> bool:
        if time.monotonic() >= self.until:
            return False
        if self.apis and api not in self.apis:
            return False
        return not self.match or any(self.match in name for name in names)


@dataclass
class Call:
    api: str
    names: list[str]
    region: str = ""  # the SigV4 credential scope's region the call was signed for
    at: float = field(default_factory=time.monotonic)
    end: float = float("inf")
    response_bytes: int = 0


def _names(body: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for field_name in ("Name", "SecretId", "Path"):
        if isinstance(body.get(field_name), str):
            names.append(body[field_name])
    for field_name in ("Names", "SecretIdList"):
        if isinstance(body.get(field_name), list):
            names.extend(str(item) for item in body[field_name])
    return names


class FaultProxy:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.calls: list[Call] = []
        self.rules: list[Rule] = []
        self._lock = threading.Lock()
        self._active: Counter[str] = Counter()
        self.max_active: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.url = ""
        self._thread = threading.Thread(target=self._serve, daemon=True)

    # -- control, from the test's thread ------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock:
            if rule in self.rules:
                self.rules.remove(rule)

    def release(self, rule: Rule) -> None:
        """Open a gate: every call held at it, and every later one, goes on to moto."""
        rule.opened.set()

    def wait_held(self, rule: Rule, calls: int = 1, timeout: float = 15.0) -> None:
        """Block until ``calls`` calls are waiting at the gate ``rule`` (or fail)."""
        deadline = time.monotonic() + timeout
        while rule.held < calls:
            if time.monotonic() > deadline:
                raise AssertionError(f"{calls} calls never reached the gate ({rule.held} did)")
            time.sleep(0.005)

    def active(self, fragment: str) -> int:
        """Calls naming ``fragment`` in progress now."""
        with self._lock:
            return sum(1 for c in self.calls
                       if c.end == float("inf") and any(fragment in n for n in c.names))

    def bytes_sent(self, fragment: str) -> int:
        """Response body bytes the proxy passed back for calls naming ``fragment``."""
        with self._lock:
            return sum(c.response_bytes for c in self.calls
                       if any(fragment in n for n in c.names))

    def count(self, name: str, api: str | None = None) -> int:
        """Calls whose requested names include ``name`` exactly (optionally of one API)."""
        with self._lock:
            return sum(1 for call in self.calls
                       if name in call.names and (api is None or call.api == api))

    def count_api(self, api: str) -> int:
        """Calls of one API, whatever they name (GetCallerIdentity names nothing)."""
        with self._lock:
            return sum(1 for call in self.calls if call.api == api)

    def count_matching(self, fragment: str, api: str | None = None) -> int:
        with self._lock:
            return sum(1 for call in self.calls
                       if any(fragment in n for n in call.names)
                       and (api is None or call.api == api))

    def peak_concurrency(self, fragment: str) -> int:
        """The most calls naming ``fragment`` that were in progress at one moment."""
        with self._lock:
            spans = [(c.at, c.end) for c in self.calls if any(fragment in n for n in c.names)]
        edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans],
                       key=lambda edge: (edge[0], edge[1]))
        peak = active = 0
        for _, step in edges:
            active += step
            peak = max(peak, active)
        return peak

    # -- the proxy itself --------------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def _rule_for(self, api: str, names: list[str]) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.applies(api, names):
                    return rule
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        api = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        query_protocol = request.content_type == "application/x-www-form-urlencoded"
        try:
            names = _names(json.loads(raw)) if raw and not query_protocol else []
        except ValueError:
            names = []
        if query_protocol:  # STS: Action=AssumeRole&RoleArn=...
            form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"))
            api = form.get("Action", [""])[0]
            names = form.get("RoleArn", [])
        elif not api:  # S3's REST calls: the object is the path
            api = f"S3.{request.method}"
            names = [request.path]
        credential = request.headers.get("Authorization", "").partition("Credential=")[2]
        call = Call(api, names, region=[*credential.split("/"), "", "", ""][2])
        with self._lock:
            self.calls.append(call)
        rule = self._rule_for(api, names)
        scope = names[0] if names else ""
        with self._lock:
            self._active[scope] += 1
            self.max_active[scope] = max(self.max_active[scope], self._active[scope])
        try:
            if rule is not None:
                if rule.kind == "throttle":
                    return self._error(400, "ThrottlingException", "Rate exceeded",
                                       query_protocol)
                if rule.kind == "error500":
                    return self._error(500, "InternalServerError", "injected failure",
                                       query_protocol)
                if rule.kind == "html500":
                    page = "<html><head><title>500 Internal Server Error</title></head>\n" \
                           "<body><h1>Internal Server Error</h1></body></html>\n"
                    return web.Response(status=500, text=page, content_type="text/html")
                if rule.kind == "gate":
                    rule.held += 1
                    try:
                        while not rule.opened.is_set():
                            await asyncio.sleep(0.002)
                    finally:
                        rule.held -= 1
                    rule.passed += 1
                if rule.kind == "error":
                    return self._error(rule.status, rule.code, f"injected {rule.code}",
                                       query_protocol)
                if rule.kind == "drop":
                    assert request.transport is not None
                    request.transport.abort()
                    return web.Response(status=500)
                if rule.kind == "delay":
                    await asyncio.sleep(rule.seconds)
            response = await self._forward(request, raw)
            if rule is not None and rule.kind == "item_error":
                response = self._item_errors(response, rule)
            call.response_bytes = len(response.body) if isinstance(response.body, bytes) else 0
            return response
        finally:
            call.end = time.monotonic()
            with self._lock:
                self._active[scope] -= 1

    @staticmethod
    def _item_errors(response: web.Response, rule: Rule) -> web.Response:
        """BatchGetSecretValue's answer with the ids ``rule`` matches failed one by one, as
        AWS reports per-secret failures (moto never does)."""
        assert isinstance(response.body, bytes)
        document = json.loads(response.body)
        kept, failed = [], []
        for secret in document.get("SecretValues", []):
            if rule.match in str(secret.get("Name", "")):
                failed.append({"SecretId": secret["Name"], "ErrorCode": rule.code,
                               "Message": f"injected {rule.code}"})
            else:
                kept.append(secret)
        document["SecretValues"] = kept
        document["Errors"] = [*document.get("Errors", []), *failed]
        return web.Response(status=response.status, text=json.dumps(document),
                            content_type=_AWS_JSON)

    @staticmethod
    def _error(status: int, code: str, message: str, query_protocol: bool = False
               ) -> web.Response:
        if query_protocol:  # STS answers errors in XML
            kind = "Receiver" if status >= 500 else "Sender"
            xml = (f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code>"
                   f"<Message>{message}</Message></Error><RequestId>r</RequestId>"
                   "</ErrorResponse>")
            return web.Response(status=status, text=xml, content_type="text/xml")
        body = json.dumps({"__type": code, "message": message})
        return web.Response(status=status, text=body, content_type=_AWS_JSON)

    async def _forward(self, request: web.Request, raw: bytes) -> web.Response:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "transfer-encoding")}
        async with self._session.request(request.method, self.target + request.path_qs,
                                         data=raw, headers=headers) as upstream:
            body = await upstream.read()
            keep = {k: v for k, v in upstream.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                         "keep-alive", "date", "server", "content-encoding")}
            return web.Response(status=upstream.status, body=body, headers=keep)
