"""AppConfig configurations in the daemon's cache, fresh by polling (README, "Polling and the
cache").

AppConfig's model is poll-based, not TTL-based: a cached configuration is served until its
poll interval is over (the interval, or AWS's ``NextPollIntervalInSeconds`` if longer); the
first read after it polls, and waits for AWS at most ``POLL_TIMEOUT_MILLIS`` before it is
answered with the cached bytes (``stale``) while the poll finishes in the background. One flight
per configuration: concurrent readers, and the prefetch, share one poll (one session start when
cold). Bodies live in the resolver's ``Cache`` (its item and byte bounds, its evictions and
their metrics); the polling state lives in ``AppConfigData``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, NamedTuple

from sidecar.aws.appconfig import SERVICE, AppConfigData, note
from sidecar.cache.clock import Clock
from sidecar.cache.store import Cache, Entry
from sidecar.config.appconfig import AppConfigSettings, ConfigId
from sidecar.core.errors import ApiError
from sidecar.core.key import Key
from sidecar.core.metrics import Metrics

HIT, MISS, STALE = "hit", "miss", "stale"
CONTENT_TYPE, VERSION, LABEL = "Content-Type", "Configuration-Version", "Version-Label"


class Config(NamedTuple):
    """A configuration as served: its bytes, AWS's headers (``meta``), the cache outcome and
    the seconds since AWS last confirmed the bytes."""

    body: bytes
    meta: tuple[tuple[str, str], ...]
    state: str
    age: int
    key: Key

    @property
    def content_type(self) -> str:
        return dict(self.meta).get(CONTENT_TYPE, "application/octet-stream")


class Configurations:
    def __init__(self, settings: AppConfigSettings, data: AppConfigData, cache: Cache,
                 clock: Clock, metrics: Metrics) -> None:
        self._settings = settings
        self._data = data
        self._cache = cache
        self._clock = clock
        self._metrics = metrics
        self._timeout = settings.poll_timeout_ms / 1000
        self._flights: dict[ConfigId, asyncio.Task[Config]] = {}
        self._keys: dict[ConfigId, Key] = {}

    def key(self, config: ConfigId) -> Key:
        key = self._keys.get(config)
        if key is None:
            if len(self._keys) >= 4096:
                self._keys.clear()
            key = self._keys[config] = Key(SERVICE, config.describe(), options=tuple(
                zip(("application", "environment", "profile"), config, strict=True)),
                role=self._settings.role)
        return key

    def hit(self, config: ConfigId) -> Config | None:
        """The cached configuration while its poll interval runs, or None. No awaiting."""
        key = self.key(config)
        entry = self._cache.get(key)
        if entry is None:
            return None
        now = self._clock()
        if self._data.due(config, now):
            return None
        return Config(entry.body, entry.meta, HIT, int(now - entry.fetched_at), key)

    async def read(self, config: ConfigId) -> Config:
        """The configuration, polling AppConfig when due; raises ``ApiError`` when AWS fails
        (or is late) with nothing cached to serve."""
        found = self.hit(config)
        if found is not None:
            return found
        key = self.key(config)
        entry = self._cache.peek(key)
        flight = self._flights.get(config)
        if flight is None:
            flight = self._start(config, entry)
        else:
            self._metrics.deduplicated[(SERVICE,)] += 1
        try:
            return await asyncio.wait_for(asyncio.shield(flight), self._timeout)
        except TimeoutError:
            reason, error = "poll_timeout", ApiError(
                504, "UpstreamTimeout",
                f"AppConfig did not answer within {self._settings.poll_timeout_ms} ms "
                "(AWS_APPCONFIG_EXTENSION_POLL_TIMEOUT_MILLIS)", transient=True)
        except ApiError as exc:
            reason, error = "upstream_error", exc
        if not error.transient or entry is None or self._cache.peek(key) is not entry:
            raise error
        self._metrics.stale[(SERVICE, reason)] += 1
        return Config(entry.body, entry.meta, STALE, int(self._clock() - entry.fetched_at), key)

    def prefetch(self, configs: Iterable[ConfigId]) -> asyncio.Future[Any]:
        """Start fetching ``configs`` now; reads of them join. Done when all have landed."""
        wanted = list(configs)
        flights = [self._flights.get(config) or self._start(config, None) for config in wanted]
        return asyncio.ensure_future(self._prefetched(wanted, flights))

    async def close(self) -> None:
        """Cancel the polls in flight (the daemon is stopping)."""
        flights = list(self._flights.values())
        for flight in flights:
            flight.cancel()
        await asyncio.gather(*flights, return_exceptions=True)

    async def _prefetched(self, configs: list[ConfigId], flights: list[asyncio.Task[Config]]
                          ) -> None:
        results = await asyncio.gather(*flights, return_exceptions=True)
        for config, result in zip(configs, results, strict=True):
            failed = isinstance(result, BaseException)
            self._metrics.prefetch[("failed" if failed else "cached",)] += 1
            if failed:
                note(logging.WARNING, "AppConfig prefetch item failed; fetched on first read",
                     configuration=config.describe(),
                     error=getattr(result, "code", type(result).__name__))
        note(logging.INFO, "AppConfig prefetch done", items=len(configs),
             failed=sum(isinstance(result, BaseException) for result in results))

    def _start(self, config: ConfigId, entry: Entry | None) -> asyncio.Task[Config]:
        flight = asyncio.get_running_loop().create_task(self._poll(config, entry is None))
        self._flights[config] = flight
        flight.add_done_callback(lambda done: self._landed(config, done))
        return flight

    def _landed(self, config: ConfigId, flight: asyncio.Task[Config]) -> None:
        if self._flights.get(config) is flight:
            del self._flights[config]
        if not flight.cancelled():
            flight.exception()  # seen here: a poll every reader gave up on is not an error

    async def _poll(self, config: ConfigId, cold: bool) -> Config:
        key = self.key(config)
        entry = self._cache.peek(key)
        try:
            latest = await self._data.fetch(config, whole=cold or entry is None)
        except ApiError as exc:
            if exc.transient:
                self._data.skip(config)
            else:  # AWS's word: the configuration is gone (or was never there)
                self._cache.drop(key)
                self._data.forget(config)
            note(logging.DEBUG, "AppConfig poll failed", configuration=config.describe(),
                 error=exc.code)
            raise
        now = self._clock()
        if latest.body is None and entry is not None and not latest.new_session:
            body, meta, state = entry.body, entry.meta, HIT  # AWS: unchanged
        else:
            meta = ((CONTENT_TYPE, latest.content_type),
                    *(((VERSION, latest.version),) if latest.version else ()),
                    *(((LABEL, latest.label),) if latest.label else ()))
            body, state = latest.body or b"", MISS
            note(logging.INFO if entry is not None else logging.DEBUG,
                 "AppConfig configuration retrieved", configuration=config.describe(),
                 version=latest.version or "-", label=latest.label or "-")
        until = self._data.next_poll_at(config)
        self._cache.put(key, Entry(body, now, until, until, float("inf"), meta=meta))
        return Config(body, meta, state, 0, key)
