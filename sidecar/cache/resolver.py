"""Reads as the HTTP side asks for them: a fresh hit, a miss joining the key's flight, stale
serving, group reads and prefetch. Knows the cache and the pipeline; knows nothing of HTTP.

- A fresh entry is a hit (no await). Past ``refresh_ahead`` of its life, a read may also
  refresh it in the background (``policy.due_for_refresh``).
- A miss joins the key's claim in flight if there is one (a single read's, a group read's or
  prefetch's): any number of concurrent readers of a key make one upstream call.
- An expired entry is served ``stale`` while a late refresh or a retry runs, or while the key
  backs off after a failure; a transient failure serves it within ``STALE_IF_ERROR_SECS``.
- Group reads answer each member from its single-read entry; the members that need AWS are
  claimed and fetched with the batch APIs (``calls.plan``); prefetch is claims without readers.
Every fetch goes through ``Pipeline.run``: one mechanism for deadlines, matching, errors and
the generation rule, whatever the read's shape.
"""

from __future__ import annotations

import asyncio

from sidecar.cache import policy
from sidecar.cache.calls import plan
from sidecar.cache.pipeline import Claims, Released
from sidecar.cache.single import BYPASS, HIT, MISS, STALE, Answer, SingleReads
from sidecar.cache.store import Entry
from sidecar.core import logs
from sidecar.core.errors import ApiError
from sidecar.core.key import Key

__all__ = ["BYPASS", "HIT", "MISS", "STALE", "Answer", "Resolver"]


class Resolver(SingleReads):
    """Single reads (``SingleReads``), group reads and prefetch, over one cache."""

    # -- group reads and prefetch -------------------------------------------------------------
    def _fetch_claimed(self, claims: Claims) -> list[asyncio.Task[None]]:
        """Fetch the claimed keys in the fewest calls (batches where AWS has them)."""
        calls = plan(self._upstream, claims, self.cache.peek, self._settings.s3_max_object_bytes)
        return [self._spawn(self.pipeline.run(call, claims)) for call in calls]

    async def read_many(self, keys: tuple[Key, ...], refresh_now: bool = False,
                        max_age: int | None = None) -> list[Answer | ApiError]:
        """Answers for ``keys``, in order: each member is its single-read entry.

        Fresh members are hits, members in flight are joined, and the rest are claimed (so
        that concurrent reads join them) and fetched together. A member AWS has no value for
        comes back as its ``ApiError`` (``item`` set when it is AWS's word on that id); so does
        one whose whole call failed with nothing stale to serve.
        """
        answers: dict[Key, Answer | ApiError] = {}
        waits: dict[Key, asyncio.Future[Entry]] = {}
        kept: dict[Key, Entry] = {}
        claims: Claims = {}
        now = self.clock()
        for key in keys:
            if self.caches(key) and not refresh_now and (
                    max_age is None or policy.is_young(self.cache.peek(key), now, max_age)):
                hit = self.hit(key)
                if hit is not None:
                    answers[key] = hit
                    continue
                entry, stale = self._expired(key)
                if stale is not None:
                    answers[key] = stale
                    continue
                if entry is not None:
                    kept[key] = entry
                flight = self._in_flight.get(key)
                if flight is not None:
                    self.metrics.deduplicated[(key.limits(),)] += 1
                    waits[key] = flight
                    continue
            claims[key] = waits[key] = self.pipeline.claim(key)
        calls = self._fetch_claimed(claims)
        for key, waiting in waits.items():
            try:
                entry = await asyncio.shield(waiting)
                answers[key] = Answer(entry.body, BYPASS if refresh_now else MISS,
                                      policy.age(entry, self.clock()), entry.meta)
            except Released:
                answers[key] = await self._read_or_error(key)
            except ApiError as exc:
                answers[key] = self._kept_on_error(key, kept.get(key), exc) or exc
        await asyncio.gather(*calls, return_exceptions=True)
        return [answers[key] for key in keys]

    async def _read_or_error(self, key: Key) -> Answer | ApiError:
        try:
            return await self.read(key)
        except ApiError as exc:
            return exc

    def begin_prefetch(self, keys: tuple[Key, ...]) -> asyncio.Task[None]:
        """Claim ``keys`` at once (a read of one joins its call), then fetch them in batches.

        What fails is logged (name and error code only); a key no answer matched is fetched
        alone, within the prefetch.
        """
        claims: Claims = {key: self.pipeline.claim(key) for key in keys
                          if self.caches(key) and key not in self._in_flight}
        return self._spawn(self._prefetched(self._fetch_claimed(claims), claims, len(keys)))

    async def prefetch(self, keys: tuple[Key, ...]) -> None:
        await self.begin_prefetch(keys)

    async def _prefetched(self, calls: list[asyncio.Task[None]], claims: Claims,
                          asked: int) -> None:
        try:
            await asyncio.gather(*calls)
        finally:
            for key, claim in claims.items():  # cancelled: release every claim still held
                self.pipeline.settle(key, claim, None, Released())
        cached = 0
        for key, claim in claims.items():
            error = claim.exception()
            if error is None:
                cached += 1
            else:
                logs.warn("prefetch item failed", name=key.describe(),
                          error=getattr(error, "code", type(error).__name__))
        logs.info("prefetch done", cached=cached, asked=asked)
        self.metrics.prefetch[("cached",)] += cached
        self.metrics.prefetch[("failed",)] += len(claims) - cached

