"""Single reads: a fresh hit (no await), a miss joining the key's claim in flight, stale
serving while a late refresh or a retry runs or the key backs off, and a transient failure
answered with the entry still kept (``STALE_IF_ERROR_SECS``). Every fetch goes through
``Pipeline.run``. ``resolver.Resolver`` adds group reads and prefetch on top.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

from sidecar.aws.source import Source
from sidecar.cache import policy
from sidecar.cache.calls import single
from sidecar.cache.clock import Clock
from sidecar.cache.pipeline import Pipeline, Released
from sidecar.cache.store import Cache, Entry
from sidecar.config.settings import Settings
from sidecar.core import logs
from sidecar.core.errors import ApiError
from sidecar.core.key import Key
from sidecar.core.metrics import Metrics

HIT, MISS, STALE, BYPASS = "hit", "miss", "stale", "bypass"


class Answer(NamedTuple):
    body: bytes
    state: str
    age: int
    meta: tuple[tuple[str, str], ...] = ()


class SingleReads:
    """The cache, its pipeline and the single-read policy; knows nothing of HTTP."""

    def __init__(
        self,
        settings: Settings,
        upstream: Source,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        wall: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self._settings = settings
        self._upstream = upstream
        self.clock = Clock(clock, wall)
        self._jumps = 0
        self.cache = Cache(settings.cache_items if settings.caching_on() else 0,
                           settings.cache_bytes, on_evict=self._evicted)
        self.pipeline = Pipeline(settings, upstream, self.cache, self.clock, jitter)
        self._in_flight = self.pipeline.in_flight
        self._tasks: set[asyncio.Task[Any]] = set()

    def caches(self, key: Key) -> bool:
        return self.pipeline.caches(key)

    def _evicted(self, key: Key, cause: str) -> None:
        self.metrics.evictions[(cause,)] += 1
        self.pipeline.generations.dropped(key)

    # -- single reads -------------------------------------------------------------------------
    def hit(self, key: Key) -> Answer | None:
        """The answer from a fresh entry, or None. No awaiting: the server calls it first."""
        entry = self.cache.get(key)
        if entry is None:
            return None
        now = self.clock()
        if self.clock.jumps != self._jumps:
            self._jumps = self.clock.jumps
            logs.info("clock jump detected (restored snapshot?): cached entries have aged")
        if now >= entry.fresh_until:
            return None
        if now >= entry.refresh_at and key not in self._in_flight \
                and policy.due_for_refresh(entry, now):
            entry.refresh_started = now
            self._start(key, background=True)
        entry.last_read = now
        return Answer(entry.body, HIT, int(now - entry.fetched_at), entry.meta)

    async def read(self, key: Key, refresh_now: bool = False,
                   max_age: int | None = None) -> Answer:
        """One key's answer; raises ``ApiError`` when AWS fails with nothing to serve."""
        if not self.caches(key) or refresh_now or (max_age is not None and not policy.is_young(
                self.cache.peek(key), self.clock(), max_age)):
            # Its own call, never joined to one that started before the caller asked.
            fresh = await self._fetch_alone(key)
            return Answer(fresh.body, BYPASS if refresh_now else MISS, 0, fresh.meta)
        hit = self.hit(key)
        if hit is not None:
            return hit
        entry, stale = self._expired(key)
        if stale is not None:
            return stale
        if key in self._in_flight:
            self.metrics.deduplicated[(key.limits(),)] += 1
        while True:
            try:
                if self._settings.coalesce:
                    # No local name for the claim: its exception's traceback holds this frame,
                    # and a frame holding it would make a cycle only the slow GC frees.
                    fresh = await asyncio.shield(self._in_flight.get(key) or self._start(key))
                else:  # every reader its own call: only to compare with caches that work so
                    fresh = await self._fetch_alone(key)
            except Released:
                continue  # the call it joined was given up: fetch on its own
            except ApiError as exc:
                kept = self._kept_on_error(key, entry, exc)
                if kept is None:
                    raise
                return kept
            return Answer(fresh.body, MISS, policy.age(fresh, self.clock()), fresh.meta)

    def _expired(self, key: Key) -> tuple[Entry | None, Answer | None]:
        """The key's expired entry still kept (or None), and its stale answer if a reader gets
        it at once rather than wait for AWS."""
        entry = self.cache.get(key)
        if entry is None:
            return None, None
        now = self.clock()
        if not policy.is_kept(entry, now):
            self.cache.drop(key)
            return None, None
        reason = policy.stale_reason(entry, now, key in self._in_flight)
        if reason is None:
            return entry, None
        if reason == "backoff" and now >= entry.retry_at:
            self._start(key, background=True)  # the back-off ran out: retry meanwhile
        self.metrics.stale[(key.limits(), reason)] += 1
        return entry, Answer(entry.body, STALE, policy.age(entry, now), entry.meta)

    def _kept_on_error(self, key: Key, entry: Entry | None, error: ApiError) -> Answer | None:
        """The stale answer a transient failure leaves, if the entry is still the one cached
        (a definite answer that dropped it meanwhile is final) and still kept."""
        now = self.clock()
        if not error.transient or entry is None or self.cache.peek(key) is not entry \
                or not policy.is_kept(entry, now):
            return None
        self.metrics.stale[(key.limits(), "upstream_error")] += 1
        return Answer(entry.body, STALE, policy.age(entry, now), entry.meta)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _call(self, key: Key) -> Any:
        return single(self._upstream, key, self.cache.peek(key),
                      self._settings.s3_max_object_bytes)

    def _start(self, key: Key, background: bool = False) -> asyncio.Future[Entry]:
        """Claim ``key`` and fetch it; readers join the claim."""
        claim = self.pipeline.claim(key)
        claim.add_done_callback(lambda done: self._fetched(key, done, background))
        self._spawn(self.pipeline.run(self._call(key), {key: claim}))
        return claim

    def _fetched(self, key: Key, claim: asyncio.Future[Entry], background: bool) -> None:
        error = None if claim.cancelled() else claim.exception()
        if background:
            outcome = "success" if error is None else "failure"
            self.metrics.refreshes[(key.limits(), outcome)] += 1
        if error is not None and logs.debug_on() and not isinstance(error, Released):
            logs.debug("fetch failed", name=key.describe(),
                       error=getattr(error, "code", type(error).__name__))

    async def _fetch_alone(self, key: Key) -> Entry:
        claim = self.pipeline.claim(key, shared=False)
        await self.pipeline.run(self._call(key), {key: claim})
        return claim.result()

    async def close(self) -> None:
        """Cancel fetches nobody can use any more (at shutdown)."""
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
