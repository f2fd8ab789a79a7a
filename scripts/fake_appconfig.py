"""A fake AppConfig Data service: StartConfigurationSession and GetLatestConfiguration on the
real wire protocol (botocore's ``appconfigdata`` model: REST-JSON, ``POST /configurationsessions``
answering 201 ``{"InitialConfigurationToken"}``, ``GET /configuration?configuration_token=``
answering the bytes with ``Content-Type``, ``Next-Poll-Configuration-Token``,
``Next-Poll-Interval-In-Seconds`` and ``Version-Label``, plus the ``Configuration-Version``
header the AWS agent reports). moto has no AppConfig Data API.

Like AWS: a token is good for one call; a session's first call answers the content, later calls
an empty body while the deployed version is the one the session last got; a poll before the
session's interval is over, or with a used token, is 400 ``BadRequestException``; an unknown
application, environment or profile is 404 ``ResourceNotFoundException``. Tests deploy versions
with ``deploy`` and count calls with ``count``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

SESSION_PATH = "/configurationsessions"
LATEST_PATH = "/configuration"
DEFAULT_INTERVAL = 60  # NextPollIntervalInSeconds when the session asked for none


@dataclass
class Deployed:
    ids: tuple[str, str, str]  # application, environment, profile ids (names work too)
    versions: list[tuple[bytes, str, str | None]] = field(default_factory=list)


@dataclass
class Session:
    config: tuple[str, str, str]
    interval: int
    seen: int = 0  # the version number this session last answered (0: none)
    not_before: float = 0.0


class AppConfigFake:
    def __init__(self) -> None:
        self._deployed: dict[tuple[str, str, str], Deployed] = {}
        self._sessions: dict[str, Session] = {}
        self._tokens = itertools.count(1)
        self._lock = threading.Lock()
        self.calls: Counter[tuple[str, str]] = Counter()  # (operation, profile)
        self.interval_override: int | None = None  # answer this NextPollIntervalInSeconds
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    # -- the test's side ----------------------------------------------------------------------
    def deploy(self, application: str, environment: str, profile: str, content: bytes,
               content_type: str = "application/json", label: str | None = None) -> int:
        """Deploy a new version (1, 2, ...) of the configuration; returns its number."""
        key = (application, environment, profile)
        with self._lock:
            deployed = self._deployed.setdefault(
                key, Deployed((f"app-{application}", f"env-{environment}", f"prof-{profile}")))
            deployed.versions.append((content, content_type, label))
            return len(deployed.versions)

    def expire_sessions(self) -> None:
        """Every token issued so far becomes invalid (as AWS's do after 24 hours)."""
        with self._lock:
            self._sessions.clear()

    def remove(self, application: str, environment: str, profile: str) -> None:
        """The configuration is deleted: sessions of it answer 404 from now on."""
        with self._lock:
            del self._deployed[(application, environment, profile)]

    def count(self, operation: str, profile: str | None = None) -> int:
        """Calls of ``operation`` (StartConfigurationSession, GetLatestConfiguration), of one
        profile's sessions if given."""
        with self._lock:
            return sum(n for (op, prof), n in self.calls.items()
                       if op == operation and (profile is None or prof == profile))

    # -- the service --------------------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post(SESSION_PATH, self._start_session)
        app.router.add_get(LATEST_PATH, self._latest)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    @staticmethod
    def _error(status: int, code: str, document: dict[str, object]) -> web.Response:
        return web.Response(status=status, text=json.dumps(document),
                            headers={"Content-Type": "application/json",
                                     "x-amzn-ErrorType": code})

    def _find(self, wanted: tuple[str, str, str]) -> tuple[tuple[str, str, str] | None,
                                                          str | None]:
        """The deployed configuration ``wanted`` names (by names or ids), or the kind of
        resource that is missing."""
        kinds = ("Application", "Environment", "ConfigurationProfile")
        candidates = list(self._deployed.items())
        for position, kind in enumerate(kinds):
            candidates = [(key, found) for key, found in candidates
                          if wanted[position] in (key[position], found.ids[position])]
            if not candidates:
                return None, kind
        return candidates[0][0], None

    async def _start_session(self, request: web.Request) -> web.Response:
        body = await request.json()
        fields = ("ApplicationIdentifier", "EnvironmentIdentifier",
                  "ConfigurationProfileIdentifier")
        wanted = tuple(str(body.get(name, "")) for name in fields)
        with self._lock:
            self.calls[("StartConfigurationSession", wanted[2])] += 1
            key, missing = self._find(wanted)  # type: ignore[arg-type]
            if key is None:
                assert missing is not None
                field_name = fields[("Application", "Environment",
                                     "ConfigurationProfile").index(missing)]
                return self._error(404, "ResourceNotFoundException", {
                    "Message": f"{missing} not found", "ResourceType": missing,
                    "ReferencedBy": {field_name: wanted[fields.index(field_name)]}})
            interval = int(body.get("RequiredMinimumPollIntervalInSeconds") or DEFAULT_INTERVAL)
            token = f"token-{next(self._tokens)}"
            self._sessions[token] = Session(key, interval)
        return web.json_response({"InitialConfigurationToken": token}, status=201)

    async def _latest(self, request: web.Request) -> web.Response:
        token = request.query.get("configuration_token", "")
        with self._lock:
            session = self._sessions.pop(token, None)
            profile = session.config[2] if session else "?"
            self.calls[("GetLatestConfiguration", profile)] += 1
            if session is None:
                return self._bad_request("Expired")  # used, or never issued
            if time.monotonic() < session.not_before:
                self._sessions[token] = session  # still good: AWS refuses the early call only
                return self._bad_request("PollIntervalNotSatisfied")
            if session.config not in self._deployed:
                return self._error(404, "ResourceNotFoundException", {
                    "Message": "Configuration not found", "ResourceType": "Configuration"})
            versions = self._deployed[session.config].versions
            number = len(versions)
            content, content_type, label = versions[-1]
            interval = self.interval_override or session.interval
            following = f"token-{next(self._tokens)}"
            changed = number != session.seen
            self._sessions[following] = Session(session.config, session.interval, number,
                                                time.monotonic() + interval)
        headers = {"Content-Type": content_type, "Next-Poll-Configuration-Token": following,
                   "Next-Poll-Interval-In-Seconds": str(interval)}
        if changed:
            headers["Configuration-Version"] = str(number)
            if label:
                headers["Version-Label"] = label
        return web.Response(body=content if changed else b"", headers=headers)

    def _bad_request(self, problem: str) -> web.Response:
        return self._error(400, "BadRequestException", {
            "Message": "Request failed: token is not valid", "Reason": "InvalidParameters",
            "Details": {"InvalidParameters": {"ConfigurationToken": {"Problem": problem}}}})
