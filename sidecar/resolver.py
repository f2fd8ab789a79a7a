"""The cache policy in one place: fresh hit, miss, refresh, coalescing, stale-if-error, prefetch.

Knows the cache and upstream; knows nothing of HTTP.

- A fresh entry is a hit. Past ``refresh_ahead`` of its life, a read also refreshes it in the
  background when the next read is likely to come too late to do so (judged by the gap since
  the previous read and the time a fetch takes): readers of a busy key never wait for AWS, and
  a busy key is refreshed just before it expires rather than at 80% of its life, which would
  cost a quarter more AWS calls.
- A miss joins the key's in-flight fetch if there is one: any number of concurrent readers of a
  key make one upstream call, and all get its answer (value or error).
- Distinct fetches per service are capped by a semaphore (``MAX_CONNECTIONS``): a flood of
  distinct misses queues instead of opening sockets without bound.
- A refetch that fails for a transient reason serves the expired entry (``stale``) for up to
  ``STALE_IF_ERROR_SECS`` past expiry; a definite answer (not found, denied) drops it. After a
  failure, the key is not tried again for a backoff (1 s, doubling up to 8 s): meanwhile its
  readers get the stale body at once instead of each waiting out AWS's retries.
- Each entry's lifetime is shortened by a random 0-10% so that fleets started together do not
  refresh in lockstep.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import NamedTuple

from sidecar import logs
from sidecar.cache import Cache, Entry
from sidecar.config import Settings
from sidecar.errors import ApiError
from sidecar.key import SECRETS, SSM, Key
from sidecar.upstream import SECRETS_BATCH, SSM_BATCH, Upstream, batches, translate

TTL_JITTER = 0.1
MIN_REFRESH_LEAD_SECS = 0.05
FAILURE_BACKOFF_SECS = 1.0
MAX_FAILURE_BACKOFF_SECS = 8.0

HIT, MISS, STALE, BYPASS = "hit", "miss", "stale", "bypass"


class Answer(NamedTuple):
    body: bytes
    state: str
    age: int


class Resolver:
    def __init__(
        self,
        settings: Settings,
        upstream: Upstream,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._upstream = upstream
        self._clock = clock
        self._jitter = jitter
        self.cache = Cache(settings.cache_items if settings.caching_on() else 0,
                           settings.cache_bytes)
        self._ttl = {SSM: settings.ssm_ttl, SECRETS: settings.secrets_ttl}
        self._timeout = {SSM: settings.ssm_timeout_ms / 1000,
                         SECRETS: settings.secrets_timeout_ms / 1000}
        self._slots = {SSM: asyncio.Semaphore(settings.max_connections),
                       SECRETS: asyncio.Semaphore(settings.max_connections)}
        self._inflight: dict[Key, asyncio.Task[Entry]] = {}
        ahead = settings.refresh_ahead
        self._refresh_ahead = ahead if 0.0 < ahead < 1.0 else None

    def caches(self, key: Key) -> bool:
        return self._settings.caching_on() and self._ttl[key.service] > 0

    async def read(self, key: Key, refresh_now: bool = False) -> Answer:
        if not self.caches(key):
            return Answer(await self._fetch(key), MISS, 0)
        if refresh_now:
            # Its own call, never joined to one that started before the caller asked.
            refreshed = await self._fetch_and_store(key)
            return Answer(refreshed.body, BYPASS, 0)
        hit = self.hit(key)
        if hit is not None:
            return hit
        now = self._clock()
        entry: Entry | None = self.cache.get(key)
        if entry is not None:
            if now >= entry.keep_until:
                self.cache.drop(key)
                entry = None
            elif now < entry.retry_at:
                return Answer(entry.body, STALE, int(now - entry.fetched_at))
        try:
            if self._settings.coalesce:
                # No local name for the task: its exception's traceback holds this frame, and
                # a frame holding the task would make a cycle only the slow GC pass frees.
                fresh = await asyncio.shield(self._inflight.get(key) or self._start_fetch(key))
            else:  # every reader its own call: only to compare with caches that work so
                fresh = await self._fetch_and_store(key)
        except ApiError as exc:
            if exc.transient and entry is not None and self._clock() < entry.keep_until:
                self._back_off(key, entry)
                return Answer(entry.body, STALE, int(self._clock() - entry.fetched_at))
            raise
        return Answer(fresh.body, MISS, int(self._clock() - fresh.fetched_at))

    def hit(self, key: Key) -> Answer | None:
        """The answer from a fresh entry, or None. No awaiting: the server calls it first."""
        entry = self.cache.get(key)
        if entry is None:
            return None
        now = self._clock()
        if now >= entry.fresh_until:
            return None
        if now >= entry.refresh_at and key not in self._inflight and \
                now + (now - entry.last_read) + entry.lead >= entry.fresh_until:
            self._start_fetch(key)
        entry.last_read = now
        return Answer(entry.body, HIT, int(now - entry.fetched_at))

    def _back_off(self, key: Key, stale: Entry) -> None:
        """Serve ``stale`` without asking AWS for a while, longer after each failure."""
        current = self.cache.get(key)
        if current is None or current.fetched_at != stale.fetched_at or \
                self._clock() < current.retry_at:
            return  # replaced meanwhile, or another reader already backed off
        wait = min(FAILURE_BACKOFF_SECS * 2 ** current.failures, MAX_FAILURE_BACKOFF_SECS)
        current.retry_at = self._clock() + wait
        current.failures += 1

    def _start_fetch(self, key: Key) -> asyncio.Task[Entry]:
        task = asyncio.get_running_loop().create_task(self._fetch_and_store(key))
        self._inflight[key] = task
        task.add_done_callback(lambda done: self._fetch_done(key, done))
        return task

    def _fetch_done(self, key: Key, task: asyncio.Task[Entry]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled() and task.exception() is not None:
            # Retrieved here so that a background refresh nobody waits on is not reported as
            # an unhandled error; the readers that do wait re-raise it themselves.
            logs.debug("fetch failed", name=key.describe(), error=getattr(
                task.exception(), "code", type(task.exception()).__name__))

    def _deadline(self, key: Key) -> AbstractAsyncContextManager[object]:
        seconds = self._timeout[key.service]
        return asyncio.timeout(seconds) if seconds > 0 else nullcontext()

    async def _fetch(self, key: Key) -> bytes:
        """One upstream call within the key's timeout, queued behind the service's cap."""
        try:
            async with self._deadline(key), self._slots[key.service]:
                return await self._upstream.fetch(key)
        except TimeoutError as exc:
            raise translate(exc) from None

    async def _fetch_and_store(self, key: Key) -> Entry:
        started = self._clock()
        try:
            body = await self._fetch(key)
        except ApiError as exc:
            if not exc.transient:
                self.cache.drop(key)
            raise
        entry = self._entry(key, body, fetch_secs=self._clock() - started)
        self.cache.put(key, entry)
        return entry

    def _entry(self, key: Key, body: bytes, fetch_secs: float) -> Entry:
        now = self._clock()
        life = self._ttl[key.service] * (1.0 - TTL_JITTER * self._jitter())
        refresh_at = now + life * self._refresh_ahead if self._refresh_ahead else math.inf
        return Entry(body=body, fetched_at=now, fresh_until=now + life, refresh_at=refresh_at,
                     keep_until=now + life + self._settings.stale_if_error_secs,
                     lead=max(MIN_REFRESH_LEAD_SECS, 2 * fetch_secs), last_read=now)

    async def prefetch(self, keys: tuple[Key, ...]) -> None:
        """Fetch ``keys`` with the batch APIs and cache what comes back.

        Whatever fails or is not returned is logged (name and error code only) and left to be
        fetched normally on its first read.
        """
        groups: list[tuple[str, list[Key]]] = []
        cacheable = [key for key in keys if self.caches(key)]
        for decrypt in (False, True):
            plain = [k for k in cacheable if k.service == SSM and k.with_decryption is decrypt]
            groups += [(SSM, batch) for batch in batches(plain, SSM_BATCH)]
        secrets = [k for k in cacheable if k.service == SECRETS]
        # BatchGetSecretValue takes no version selectors: those are fetched one by one.
        plain = [k for k in secrets if not (k.version_id or k.version_stage)]
        singles = [k for k in secrets if k.version_id or k.version_stage]
        groups += [(SECRETS, batch) for batch in batches(plain, SECRETS_BATCH)]
        results = await asyncio.gather(
            *(self._prefetch_batch(service, batch) for service, batch in groups),
            *(self._prefetch_single(key) for key in singles),
        )
        logs.info("prefetch done", cached=sum(results), asked=len(keys))

    async def _prefetch_batch(self, service: str, batch: list[Key]) -> int:
        started = self._clock()
        try:
            async with self._slots[service]:
                if service == SSM:
                    found = await self._upstream.fetch_parameters(batch)
                else:
                    found = await self._upstream.fetch_secrets(batch)
        except Exception as exc:
            logs.warn("prefetch batch failed", service=service, items=len(batch),
                      error=translate(exc).code)
            return 0
        for key, body in found.items():
            if key not in self.cache:
                self.cache.put(key, self._entry(key, body, fetch_secs=self._clock() - started))
        for key in batch:
            if key not in found:
                logs.warn("prefetch item not fetched", name=key.describe())
        return len(found)

    async def _prefetch_single(self, key: Key) -> int:
        try:
            await self._fetch_and_store(key)
        except ApiError as exc:
            logs.warn("prefetch item failed", name=key.describe(), error=exc.code)
            return 0
        return 1

    async def close(self) -> None:
        """Cancel fetches nobody can use any more (at shutdown)."""
        pending = list(self._inflight.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
