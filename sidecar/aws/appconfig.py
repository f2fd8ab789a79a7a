"""AppConfig Data: a session per configuration and its polling state (README, "Polling and the
cache").

``fetch(config)`` is one poll: StartConfigurationSession when the configuration has no session
(or its content must be had in full), then GetLatestConfiguration with the session's token. AWS
answers a new token each time and the least time to wait before the next poll
(``NextPollIntervalInSeconds``); an empty configuration means "unchanged since your last poll"
(AWS, AppConfig Data API reference). A token AWS refuses (used, or older than 24 hours) is
replaced by a new session, once. Errors are ``AppConfigError``: the ``ApiError`` the rest of the
daemon knows, with AWS's status and error document kept, since the agent's clients see those.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from sidecar.aws.clients import Clients
from sidecar.aws.errors import translate
from sidecar.config.appconfig import AppConfigSettings, ConfigId
from sidecar.core.errors import ApiError

SERVICE = "appconfig"  # the clients' and the metrics' name (botocore's: appconfigdata)
MIN_SESSION_POLL_SECS = 15  # RequiredMinimumPollIntervalInSeconds' floor (the Data API model)
MAX_SESSIONS = 10_000  # polling state kept; past it the least recently polled starts anew
# AWS's error document members for the Data API's errors (botocore adds them to the response).
ERROR_FIELDS = ("ResourceType", "ReferencedBy", "Reason", "Details")
LOGGER = logging.getLogger("sidecar.appconfig")  # AWS_APPCONFIG_EXTENSION_LOG_LEVEL's own level
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "error": logging.ERROR, "none": logging.CRITICAL + 10}


def set_log_level(level: str | None) -> None:
    """The AppConfig side's lines at ``level``; None: the daemon's own level."""
    LOGGER.setLevel(_LEVELS[level] if level else logging.NOTSET)


def note(level: int, message: str, **fields: object) -> None:
    """A log line of the AppConfig side (``source=sidecar.appconfig``); never a value."""
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, message, extra={"fields": fields})


class AppConfigError(ApiError):
    """An AppConfig failure with AWS's own status and error document (``Message`` and the
    modeled fields: ``ResourceType``, ``ReferencedBy``, ``Reason``, ``Details``)."""

    def __init__(self, base: ApiError, status: int, document: dict[str, Any]) -> None:
        super().__init__(status, base.code, base.message, transient=base.transient)
        self.document = document


def appconfig_error(exc: BaseException) -> ApiError:
    """``exc`` as the error a reader sees (``translate``'s, with AWS's status kept)."""
    base = translate(exc)
    if not isinstance(exc, ClientError):
        return base
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or base.status)
    document: dict[str, Any] = {"Message": base.message}
    document.update((name, exc.response[name]) for name in ERROR_FIELDS if name in exc.response)
    return AppConfigError(base, status if 400 <= status <= 599 else base.status, document)


class Latest(NamedTuple):
    """One poll's answer. ``body`` None: unchanged since the session's previous poll (or, from
    a ``new_session``, an empty configuration)."""

    body: bytes | None
    content_type: str
    version: str | None  # the Configuration-Version header AWS sent, if any
    label: str | None  # Version-Label
    new_session: bool


class _Session:
    __slots__ = ("next_poll_at", "token")

    def __init__(self, token: str, next_poll_at: float) -> None:
        self.token: str | None = token
        self.next_poll_at = next_poll_at


class AppConfigData:
    """Sessions and polling state, one per configuration; calls through ``Clients.call``
    (metrics, role, DEBUG lines), at most ``max_connections`` at once."""

    def __init__(self, clients: Clients, settings: AppConfigSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clients = clients
        self._settings = settings
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.max_connections)
        self._sessions: OrderedDict[ConfigId, _Session] = OrderedDict()
        region = settings.region
        self._region = None if region == clients.home_region else region

    def due(self, config: ConfigId, now: float) -> bool:
        """Whether a read of ``config`` now must poll (no session, or its interval is over)."""
        session = self._sessions.get(config)
        return session is None or now >= session.next_poll_at

    def next_poll_at(self, config: ConfigId) -> float:
        session = self._sessions.get(config)
        return session.next_poll_at if session is not None else self._clock()

    def forget(self, config: ConfigId) -> None:
        """No session any more: the next poll starts one (full content)."""
        self._sessions.pop(config, None)

    def skip(self, config: ConfigId) -> None:
        """A poll failed or ran late: skip this interval (AWS: "the extension skips this poll
        interval"). Its token may be spent, so the next poll starts a new session."""
        session = self._sessions.get(config)
        if session is not None:
            session.token = None
            session.next_poll_at = self._clock() + self._settings.poll_interval_secs

    async def fetch(self, config: ConfigId, whole: bool) -> Latest:
        """One poll of ``config``; ``whole``: the content is wanted even if unchanged (a new
        session). Raises ``ApiError`` (``AppConfigError`` for AWS's answers)."""
        session = None if whole else self._sessions.get(config)
        token = session.token if session is not None else None
        fresh_session = token is None
        if token is None:
            token = await self._start(config)
        try:
            return await self._latest(config, token, fresh_session)
        except AppConfigError as exc:
            if fresh_session or exc.code != "BadRequestException":
                raise
        note(logging.INFO, "AppConfig session token refused; starting a new session",
             configuration=config.describe())
        return await self._latest(config, await self._start(config), True)

    async def _call(self, api: str, config: ConfigId, **kwargs: Any) -> dict[str, Any]:
        async with self._slots:
            try:
                return await self._clients.call(SERVICE, api, config.describe(),
                                                self._settings.role, self._region, **kwargs)
            except Exception as exc:
                raise appconfig_error(exc) from None

    async def _start(self, config: ConfigId) -> str:
        kwargs: dict[str, Any] = {"ApplicationIdentifier": config.application,
                                  "EnvironmentIdentifier": config.environment,
                                  "ConfigurationProfileIdentifier": config.profile}
        if self._settings.poll_interval_secs >= MIN_SESSION_POLL_SECS:
            kwargs["RequiredMinimumPollIntervalInSeconds"] = self._settings.poll_interval_secs
        response = await self._call("start_configuration_session", config, **kwargs)
        return str(response["InitialConfigurationToken"])

    async def _latest(self, config: ConfigId, token: str, new_session: bool) -> Latest:
        response = await self._call("get_latest_configuration", config,
                                    ConfigurationToken=token)
        wait = max(self._settings.poll_interval_secs,
                   int(response.get("NextPollIntervalInSeconds") or 0))
        session = _Session(str(response["NextPollConfigurationToken"]), self._clock() + wait)
        self._sessions[config] = session
        self._sessions.move_to_end(config)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        body: Any = response.get("Configuration")
        if hasattr(body, "read"):  # a streaming body, should a botocore model ever make it one
            body = await body.read()
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return Latest(bytes(body) if body else None,
                      str(response.get("ContentType") or "application/octet-stream"),
                      headers.get("configuration-version") or None,
                      response.get("VersionLabel") or None, new_session)
