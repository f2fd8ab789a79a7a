"""The cache policy in one place: fresh hit, miss, refresh, coalescing, stale serving, prefetch.

Knows the cache and upstream; knows nothing of HTTP.

- A fresh entry is a hit. Past ``refresh_ahead`` of its life, a read also refreshes it in the
  background when the next read is likely to come too late to do so (judged by the gap since
  the previous read and the time a fetch takes). If that refresh lands late (AWS slowed down),
  readers after expiry get the current body as ``stale`` until it lands: they never wait.
- A miss joins the key's in-flight fetch if there is one, a prefetch batch included: any number
  of concurrent readers of a key make one upstream call, and all get its answer.
- **Generations.** Every fetch takes a stamp when it starts; an entry remembers its fetch's
  stamp. A result is stored only if it started after the entry it would replace and after the
  key was last dropped (a definite error, an eviction). So a late refresh never puts back a
  rotated value, a deleted parameter, or a key evicted meanwhile.
- Distinct fetches per service are capped by a semaphore (``MAX_CONNECTIONS``).
- A refetch that fails for a transient reason keeps the entry and serves it (``stale``) for up
  to ``STALE_IF_ERROR_SECS`` past expiry; a definite answer (not found, denied) drops it. After
  a failure the key backs off (1 s, doubling up to 8 s); when the back-off runs out, the retry
  runs in the background while readers keep getting the stale body.
- Each entry's lifetime is shortened by a random 0-10% so that fleets started together do not
  refresh in lockstep.
- A jump between the wall clock and the monotonic clock (a SnapStart restore, a resumed VM)
  ends the freshness of every entry fetched before it (checked on every hit: one clock read).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import NamedTuple

from cachetools import LRUCache

from sidecar.aws.upstream import (
    SECRETS_BATCH,
    SSM_BATCH,
    NotModified,
    Upstream,
    batches,
    translate,
)
from sidecar.cache.store import Cache, Entry
from sidecar.config.settings import Settings
from sidecar.core import logs
from sidecar.core.errors import ApiError
from sidecar.core.key import S3, SECRETS, SSM, SSM_PATH, Key
from sidecar.core.metrics import Metrics

TTL_JITTER = 0.1
MIN_REFRESH_LEAD_SECS = 0.05
FAILURE_BACKOFF_SECS = 1.0
MAX_FAILURE_BACKOFF_SECS = 8.0
# Wall clock minus monotonic clock moving by more than this means the process was frozen and
# thawed (SnapStart restore) or the machine slept: entries from before are no longer fresh.
RESTORE_JUMP_SECS = 2.0
RECENT_DROPS = 4096

HIT, MISS, STALE, BYPASS = "hit", "miss", "stale", "bypass"


class Answer(NamedTuple):
    body: bytes
    state: str
    age: int
    meta: tuple[tuple[str, str], ...] = ()


class _NotInBatch(Exception):
    """A prefetch batch did not return this key: a reader that joined fetches it itself."""


class Resolver:
    def __init__(
        self,
        settings: Settings,
        upstream: Upstream,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        wall: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self._settings = settings
        self._upstream = upstream
        self._clock = clock
        self._jitter = jitter
        self._wall = wall
        self._wall_offset = wall() - clock()
        self.cache = Cache(settings.cache_items if settings.caching_on() else 0,
                           settings.cache_bytes, on_evict=self._evicted)
        self._ttl = {SSM: settings.ssm_ttl, SECRETS: settings.secrets_ttl, S3: settings.s3_ttl}
        self._timeout = {SSM: settings.ssm_timeout_ms / 1000,
                         SECRETS: settings.secrets_timeout_ms / 1000,
                         S3: settings.s3_timeout_ms / 1000}
        self._slots = {service: asyncio.Semaphore(settings.max_connections)
                       for service in (SSM, SECRETS, S3)}
        self._inflight: dict[Key, asyncio.Future[Entry]] = {}
        self._stamp = 0
        self._running: Counter[Key] = Counter()  # fetches in progress, per key
        self._dropped: dict[Key, int] = {}  # last drop's stamp, while fetches of the key run
        self._recent_drops: LRUCache[Key, int] = LRUCache(maxsize=RECENT_DROPS)
        ahead = settings.refresh_ahead
        self._refresh_ahead = ahead if 0.0 < ahead < 1.0 else None

    def caches(self, key: Key) -> bool:
        return self._settings.caching_on() and self._ttl[key.limits()] > 0

    # -- reading ------------------------------------------------------------------------------
    async def read(self, key: Key, refresh_now: bool = False,
                   max_age: int | None = None) -> Answer:
        if not self.caches(key):
            if key.service == SSM_PATH:
                return Answer((await self._fetch_group(key))[0], MISS, 0)
            if key.service == S3:
                body, meta = await self._fetch_object(key, None)
                return Answer(body, MISS, 0, meta)
            return Answer(await self._fetch(key), MISS, 0)
        if refresh_now or (max_age is not None and not self._young(key, max_age)):
            # Its own call, never joined to one that started before the caller asked.
            refreshed = await self._fetch_and_store(key)
            return Answer(refreshed.body, BYPASS if refresh_now else MISS, 0, refreshed.meta)
        hit = self.hit(key)
        if hit is not None:
            return hit
        now = self._clock()
        entry = self.cache.get(key)
        if entry is not None:
            if now >= entry.keep_until:
                self.cache.drop(key)
                entry = None
            elif self._serves_stale(key, entry, now):
                return Answer(entry.body, STALE, int(now - entry.fetched_at), entry.meta)
        if key in self._inflight:
            self.metrics.deduplicated[(key.limits(),)] += 1
        while True:
            try:
                if self._settings.coalesce:
                    # No local name for the future: its exception's traceback holds this
                    # frame, and a frame holding it would make a cycle only the slow GC frees.
                    fresh = await asyncio.shield(self._inflight.get(key) or self._start_fetch(key))
                else:  # every reader its own call: only to compare with caches that work so
                    fresh = await self._fetch_and_store(key)
            except _NotInBatch:
                continue  # the prefetch batch did not have it: fetch it on its own
            except ApiError as exc:
                # Stale only if the entry is still the one cached: a definite answer that
                # dropped it meanwhile is final.
                if exc.transient and entry is not None and self.cache.peek(key) is entry \
                        and self._clock() < entry.keep_until:
                    self.metrics.stale[(key.limits(), "upstream_error")] += 1
                    return Answer(entry.body, STALE, int(self._clock() - entry.fetched_at),
                                  entry.meta)
                raise
            return Answer(fresh.body, MISS, int(self._clock() - fresh.fetched_at), fresh.meta)

    def hit(self, key: Key) -> Answer | None:
        """The answer from a fresh entry, or None. No awaiting: the server calls it first."""
        entry = self.cache.get(key)
        if entry is None:
            return None
        now = self._clock()
        if now >= entry.fresh_until:
            return None
        if abs(self._wall() - now - self._wall_offset) > RESTORE_JUMP_SECS:
            self._restored(now)
            return None
        if now >= entry.refresh_at and key not in self._inflight and now >= entry.retry_at and \
                now + (now - entry.last_read) + entry.lead >= entry.fresh_until:
            entry.refresh_started = now
            self._start_fetch(key, background=True)
        entry.last_read = now
        return Answer(entry.body, HIT, int(now - entry.fetched_at), entry.meta)

    def _young(self, key: Key, max_age: int) -> bool:
        """Whether the cached entry (if any) was fetched less than ``max_age`` seconds ago."""
        entry = self.cache.peek(key)
        return entry is not None and self._clock() - entry.fetched_at < max_age

    def _serves_stale(self, key: Key, entry: Entry, now: float) -> bool:
        """Whether a reader of this expired entry gets it at once instead of waiting for AWS."""
        if key in self._inflight:
            # A refresh that started while the entry was fresh is landing late; or a retry
            # after failures is under way: in both cases the reader is not to pay for it.
            if entry.refresh_started > 0 or entry.failures > 0:
                reason = "refresh_late" if entry.failures == 0 else "retrying"
                self.metrics.stale[(key.limits(), reason)] += 1
                return True
            return False
        if entry.failures == 0:
            return False  # expired after an idle spell: a normal miss, the reader waits
        if now >= entry.retry_at:
            self._start_fetch(key, background=True)  # the back-off ran out: retry meanwhile
        self.metrics.stale[(key.limits(), "backoff")] += 1
        return True

    def _restored(self, now: float) -> bool:
        """Detect a freeze/thaw (SnapStart restore); if so, end every entry's freshness."""
        offset = self._wall() - now
        if abs(offset - self._wall_offset) <= RESTORE_JUMP_SECS:
            return False
        self._wall_offset = offset
        for entry in self.cache.entries():
            entry.fresh_until = min(entry.fresh_until, now)
            entry.refresh_at = min(entry.refresh_at, now)
        logs.info("clock jump detected (restored snapshot?): cached entries are no longer fresh")
        return True

    # -- fetching -----------------------------------------------------------------------------
    def _next_stamp(self) -> int:
        self._stamp += 1
        return self._stamp

    def _evicted(self, key: Key, cause: str) -> None:
        self.metrics.evictions[(cause,)] += 1
        if self._running[key]:
            self._dropped[key] = self._next_stamp()

    def _drop(self, key: Key) -> None:
        """A definite answer: forget the key, and let no fetch that started before bring it back
        (a group read's members included, which are not counted as running: hence the bounded
        record of recent drops)."""
        self.cache.drop(key)
        self._recent_drops[key] = self._next_stamp()
        if self._running[key]:
            self._dropped[key] = self._stamp

    def _begin(self, key: Key) -> int:
        self._running[key] += 1
        return self._next_stamp()

    def _end(self, key: Key) -> None:
        self._running[key] -= 1
        if self._running[key] <= 0:
            del self._running[key]
            self._dropped.pop(key, None)

    def _store(self, key: Key, entry: Entry) -> bool:
        """Cache ``entry`` unless something newer than its fetch happened to the key."""
        current = self.cache.peek(key)
        if current is not None and current.stamp > entry.stamp:
            return False
        if self._dropped.get(key, 0) > entry.stamp or self._recent_drops.get(key, 0) > entry.stamp:
            return False
        self.cache.put(key, entry)
        return True

    def _failed(self, key: Key, stamp: int, error: ApiError) -> None:
        current = self.cache.peek(key)
        if current is not None and current.stamp > stamp:
            return  # a newer fetch already answered for the key
        if not error.transient:
            self._drop(key)
        elif current is not None:
            self._back_off(current)

    def _back_off(self, entry: Entry) -> None:
        """Serve ``entry`` stale without asking AWS for a while, longer after each failure."""
        if self._clock() < entry.retry_at:
            return  # another failure already backed off
        wait = min(FAILURE_BACKOFF_SECS * 2 ** entry.failures, MAX_FAILURE_BACKOFF_SECS)
        entry.retry_at = self._clock() + wait
        entry.failures += 1

    def _start_fetch(self, key: Key, background: bool = False) -> asyncio.Task[Entry]:
        task = asyncio.get_running_loop().create_task(self._fetch_and_store(key))
        self._inflight[key] = task
        task.add_done_callback(lambda done: self._fetch_done(key, done, background))
        return task

    def _fetch_done(self, key: Key, task: asyncio.Future[Entry], background: bool) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if background and not task.cancelled():
            outcome = "failure" if task.exception() is not None else "success"
            self.metrics.refreshes[(key.limits(), outcome)] += 1
        if not task.cancelled() and task.exception() is not None:
            # Retrieved here so that a background refresh nobody waits on is not reported as
            # an unhandled error; the readers that do wait re-raise it themselves.
            logs.debug("fetch failed", name=key.describe(), error=getattr(
                task.exception(), "code", type(task.exception()).__name__))

    def _deadline(self, key: Key) -> AbstractAsyncContextManager[object]:
        seconds = self._timeout[key.limits()]
        return asyncio.timeout(seconds) if seconds > 0 else nullcontext()

    async def _fetch(self, key: Key) -> bytes:
        """One upstream call within the key's timeout, queued behind the service's cap."""
        try:
            async with self._deadline(key), self._slots[key.limits()]:
                return await self._upstream.fetch(key)
        except TimeoutError as exc:
            raise translate(exc) from None

    async def _fetch_group(self, key: Key) -> tuple[bytes, dict[Key, bytes]]:
        """A path read: its body and its members' single-read bodies."""
        try:
            async with self._deadline(key), self._slots[key.limits()]:
                return await self._upstream.fetch_path(key)
        except TimeoutError as exc:
            raise translate(exc) from None

    async def _fetch_object(self, key: Key,
                            held: Entry | None) -> tuple[bytes, tuple[tuple[str, str], ...]]:
        """An S3 object, revalidated by its ETag when ``held`` has one (a 304 keeps the body)."""
        etag = dict(held.meta).get("ETag") if held is not None else None
        try:
            async with self._deadline(key), self._slots[S3]:
                return await self._upstream.fetch_object(
                    key, etag, self._settings.s3_max_object_bytes)
        except NotModified:
            assert held is not None
            return held.body, held.meta
        except TimeoutError as exc:
            raise translate(exc) from None

    async def _fetch_and_store(self, key: Key) -> Entry:
        stamp = self._begin(key)
        started = self._clock()
        members: dict[Key, bytes] = {}
        meta: tuple[tuple[str, str], ...] = ()
        try:
            try:
                if key.service == SSM_PATH:
                    body, members = await self._fetch_group(key)
                elif key.service == S3:
                    body, meta = await self._fetch_object(key, self.cache.peek(key))
                else:
                    body = await self._fetch(key)
            except ApiError as exc:
                self._failed(key, stamp, exc)
                raise
            fetch_secs = self._clock() - started
            entry = self._entry(key, body, fetch_secs=fetch_secs, stamp=stamp)
            entry.meta = meta
            self._store(key, entry)
            for member, member_body in members.items():  # each warms its single-read key
                if self.caches(member):
                    self._store(member, self._entry(member, member_body, fetch_secs, stamp))
            return entry
        finally:
            self._end(key)

    def _entry(self, key: Key, body: bytes, fetch_secs: float, stamp: int) -> Entry:
        now = self._clock()
        life = self._ttl[key.limits()] * (1.0 - TTL_JITTER * self._jitter())
        refresh_at = now + life * self._refresh_ahead if self._refresh_ahead else math.inf
        return Entry(body=body, fetched_at=now, fresh_until=now + life, refresh_at=refresh_at,
                     keep_until=now + life + self._settings.stale_if_error_secs,
                     lead=max(MIN_REFRESH_LEAD_SECS, 2 * fetch_secs), last_read=now,
                     stamp=stamp)

    # -- group reads --------------------------------------------------------------------------
    async def read_many(self, keys: tuple[Key, ...], refresh_now: bool = False,
                        max_age: int | None = None) -> list[Answer | ApiError]:
        """Answers for ``keys`` (one service), in order: each member is its single-read entry.

        Fresh members are hits; members in flight are joined; the rest are claimed (so that
        concurrent reads join them) and fetched with the batch API, only them. A member AWS
        does not have comes back as its ``ApiError``; so does one whose whole call failed with
        nothing stale to serve.
        """
        loop = asyncio.get_running_loop()
        answers: dict[Key, Answer | ApiError] = {}
        waits: dict[Key, asyncio.Future[Entry]] = {}
        stale: dict[Key, Entry] = {}
        claims: dict[Key, asyncio.Future[Entry]] = {}
        now = self._clock()
        for key in keys:
            cached = self.caches(key)
            if cached and not refresh_now and (max_age is None or self._young(key, max_age)):
                hit = self.hit(key)
                if hit is not None:
                    answers[key] = hit
                    continue
                entry = self.cache.get(key)
                if entry is not None and now < entry.keep_until:
                    stale[key] = entry
                    if self._serves_stale(key, entry, now):
                        answers[key] = Answer(entry.body, STALE, int(now - entry.fetched_at))
                        continue
                flight = self._inflight.get(key)
                if flight is not None:
                    self.metrics.deduplicated[(key.limits(),)] += 1
                    waits[key] = flight
                    continue
            claims[key] = waits[key] = loop.create_future()
            if cached:
                self._inflight[key] = claims[key]
        service = keys[0].service
        size = SSM_BATCH if service == SSM else SECRETS_BATCH
        calls = [loop.create_task(self._group_batch(service, batch, claims))
                 for batch in batches(list(claims), size)]
        for key, waiting in waits.items():
            try:
                entry = await asyncio.shield(waiting)
                answers[key] = Answer(entry.body, BYPASS if refresh_now else MISS,
                                      int(self._clock() - entry.fetched_at))
            except _NotInBatch:
                answers[key] = await self._single_or_error(key)
            except ApiError as exc:
                held = stale.get(key)
                if exc.transient and held is not None and self.cache.peek(key) is held \
                        and self._clock() < held.keep_until:
                    self.metrics.stale[(key.limits(), "upstream_error")] += 1
                    answers[key] = Answer(held.body, STALE, int(self._clock() - held.fetched_at))
                else:
                    answers[key] = exc
        await asyncio.gather(*calls, return_exceptions=True)
        return [answers[key] for key in keys]

    async def _single_or_error(self, key: Key) -> Answer | ApiError:
        try:
            return await self.read(key)
        except ApiError as exc:
            return exc

    async def _group_batch(self, service: str, batch: list[Key],
                           claims: dict[Key, asyncio.Future[Entry]]) -> None:
        started = self._clock()
        stamps = {key: self._begin(key) for key in batch}
        try:
            try:
                async with self._slots[service]:
                    if service == SSM:
                        found, errors = await self._upstream.fetch_parameters_and_errors(batch)
                    else:
                        found, errors = await self._upstream.fetch_secrets_and_errors(batch)
            except Exception as exc:
                error = translate(exc)
                for key in batch:
                    self._failed(key, stamps[key], error)
                    self._settle(key, claims[key], None, error)
                return
            for key in batch:
                body = found.get(key)
                if body is None:
                    error = errors.get(key) or ApiError(
                        400, "ParameterNotFound" if service == SSM else
                        "ResourceNotFoundException", f"{key.describe()[:256]!r} was not returned")
                    self._failed(key, stamps[key], error)
                    self._settle(key, claims[key], None, error)
                    continue
                entry = self._entry(key, body, fetch_secs=self._clock() - started,
                                    stamp=stamps[key])
                if self.caches(key):
                    self._store(key, entry)
                self._settle(key, claims[key], entry, None)
        finally:
            for key in batch:
                self._end(key)
                if not claims[key].done():  # cancelled midway: release the claim
                    self._settle(key, claims[key], None, _NotInBatch())

    # -- prefetch -----------------------------------------------------------------------------
    def begin_prefetch(self, keys: tuple[Key, ...]) -> asyncio.Task[None]:
        """Claim ``keys`` at once (a read of one joins its batch), then fetch them in batches.

        Whatever fails or is not returned is logged (name and error code only) and fetched on
        its own by the first reader that wants it.
        """
        loop = asyncio.get_running_loop()
        claims: dict[Key, asyncio.Future[Entry]] = {}
        for key in keys:
            if self.caches(key) and key not in self._inflight:
                claims[key] = self._inflight[key] = loop.create_future()
        groups: list[tuple[str, list[Key]]] = []
        for decrypt in (False, True):
            plain = [k for k in claims if k.service == SSM and k.with_decryption is decrypt]
            groups += [(SSM, batch) for batch in batches(plain, SSM_BATCH)]
        secrets = [k for k in claims if k.service == SECRETS]
        # BatchGetSecretValue takes no version selectors: those are fetched one by one.
        plain = [k for k in secrets if not (k.version_id or k.version_stage)]
        singles = [k for k in secrets if k.version_id or k.version_stage]
        singles += [k for k in claims if k.service in (SSM_PATH, S3)]  # one call each
        groups += [(SECRETS, batch) for batch in batches(plain, SECRETS_BATCH)]
        return loop.create_task(self._prefetch(groups, singles, claims, len(keys)))

    async def prefetch(self, keys: tuple[Key, ...]) -> None:
        await self.begin_prefetch(keys)

    async def _prefetch(self, groups: list[tuple[str, list[Key]]], singles: list[Key],
                        claims: dict[Key, asyncio.Future[Entry]], asked: int) -> None:
        try:
            results = await asyncio.gather(
                *(self._prefetch_batch(service, batch, claims) for service, batch in groups),
                *(self._prefetch_single(key, claims) for key in singles),
            )
            logs.info("prefetch done", cached=sum(results), asked=asked)
            self.metrics.prefetch[("cached",)] += sum(results)
            self.metrics.prefetch[("failed",)] += len(claims) - sum(results)
        finally:
            for key, claim in claims.items():  # cancelled: release every claim still held
                self._settle(key, claim, None, _NotInBatch())

    def _settle(self, key: Key, claim: asyncio.Future[Entry], entry: Entry | None,
                error: BaseException | None) -> None:
        if self._inflight.get(key) is claim:
            del self._inflight[key]
        if claim.done():
            return
        if entry is not None:
            claim.set_result(entry)
        else:
            claim.set_exception(error or _NotInBatch())
            claim.exception()  # retrieved: nobody may be waiting on it

    async def _prefetch_batch(self, service: str, batch: list[Key],
                              claims: dict[Key, asyncio.Future[Entry]]) -> int:
        started = self._clock()
        stamps = {key: self._begin(key) for key in batch}
        try:
            async with self._slots[service]:
                if service == SSM:
                    found = await self._upstream.fetch_parameters(batch)
                else:
                    found = await self._upstream.fetch_secrets(batch)
        except Exception as exc:
            error = translate(exc)
            logs.warn("prefetch batch failed", service=service, items=len(batch),
                      error=error.code)
            for key in batch:
                self._settle(key, claims[key], None, error if error.transient else None)
            return 0
        finally:
            for key in batch:
                self._end(key)
        for key in batch:
            body = found.get(key)
            if body is None:
                logs.warn("prefetch item not fetched", name=key.describe())
                self._settle(key, claims[key], None, None)
                continue
            entry = self._entry(key, body, fetch_secs=self._clock() - started, stamp=stamps[key])
            self._store(key, entry)
            self._settle(key, claims[key], entry, None)
        return len(found)

    async def _prefetch_single(self, key: Key, claims: dict[Key, asyncio.Future[Entry]]) -> int:
        try:
            entry = await self._fetch_and_store(key)
        except ApiError as exc:
            logs.warn("prefetch item failed", name=key.describe(), error=exc.code)
            self._settle(key, claims[key], None, exc)
            return 0
        self._settle(key, claims[key], entry, None)
        return 1

    async def close(self) -> None:
        """Cancel fetches nobody can use any more (at shutdown)."""
        pending = [f for f in self._inflight.values() if isinstance(f, asyncio.Task)]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
