"""The one way every read reaches AWS, whatever its shape (DESIGN: "one pipeline").

``run(call, claims)``: stamp the call's keys (generations), wait for a connection slot and call
AWS under the service's deadline (``*_TIMEOUT_MILLIS``, queueing included), match answers to
keys, classify errors once (transient: keep the entry and back off; definite: drop it), store
under the generation rule, and settle every claim. A key the answer did not match is fetched
alone, never reported as not found. Readers of a key wait on its claim; a claim nobody reads
(prefetch, background refresh) is settled all the same.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext

from sidecar.aws.errors import translate
from sidecar.aws.source import Source
from sidecar.cache import policy
from sidecar.cache.calls import Call, Outcome, single
from sidecar.cache.clock import Clock
from sidecar.cache.generations import Generations
from sidecar.cache.store import Cache, Entry
from sidecar.config.settings import Settings
from sidecar.core.errors import ApiError
from sidecar.core.key import S3, SECRETS, SSM, Key

Claims = dict[Key, "asyncio.Future[Entry]"]


class Released(Exception):
    """A claim given up without an answer (its call was cancelled): a reader fetches alone."""


class Pipeline:
    def __init__(self, settings: Settings, upstream: Source, cache: Cache, clock: Clock,
                 jitter: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.upstream = upstream
        self.cache = cache
        self.clock = clock
        self.generations = Generations()
        self._jitter = jitter
        self.ttl = {SSM: settings.ssm_ttl, SECRETS: settings.secrets_ttl, S3: settings.s3_ttl}
        self._timeout = {SSM: settings.ssm_timeout_ms / 1000,
                         SECRETS: settings.secrets_timeout_ms / 1000,
                         S3: settings.s3_timeout_ms / 1000}
        self._slots = {service: asyncio.Semaphore(settings.max_connections)
                       for service in (SSM, SECRETS, S3)}
        ahead = settings.refresh_ahead
        self._refresh_ahead = ahead if 0.0 < ahead < 1.0 else None
        # The claim each key's readers join: a single read's, a group read's or prefetch's.
        self.in_flight: dict[Key, asyncio.Future[Entry]] = {}

    def caches(self, key: Key) -> bool:
        return self.settings.caching_on() and self.ttl[key.limits()] > 0

    def claim(self, key: Key, shared: bool = True) -> asyncio.Future[Entry]:
        """A claim on ``key``'s next answer; ``shared`` ones are joined by later readers."""
        claim: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        if shared and self.caches(key):
            self.in_flight[key] = claim
        return claim

    def _deadline(self, service: str) -> AbstractAsyncContextManager[object]:
        seconds = self._timeout[service]
        return asyncio.timeout(seconds) if seconds > 0 else nullcontext()

    async def run(self, call: Call, claims: Claims) -> None:
        """Make ``call`` and settle the claims of its keys; never raises (but cancellation)."""
        stamps = {key: self.generations.begin() for key in call.keys}
        started = self.clock()
        try:
            try:
                async with self._deadline(call.service), self._slots[call.service]:
                    outcome = await call.make()
            except Exception as exc:
                error = translate(exc)
                if call.names_one and not error.transient:
                    error.item = True  # AWS's word on that one id
                if call.names_one or error.transient:
                    for key in call.keys:
                        self._fail(key, stamps[key], error, claims[key])
                    return
                # A batch API refused outright (typically no secretsmanager:
                # BatchGetSecretValue permission, while GetSecretValue is allowed): each id's
                # own answer is the truth, so ask for each alone. Throttling never gets here.
                outcome = Outcome()
            for key in self._settle_outcome(call, outcome, stamps, claims, started):
                # Not matched to any answer: ask for it alone, under the same claim.
                alone = single(self.upstream, key, self.cache.peek(key),
                               self.settings.s3_max_object_bytes)
                await self.run(alone, claims)
        finally:
            for key in call.keys:  # cancelled midway: readers fetch on their own
                self.settle(key, claims[key], None, Released())

    def _settle_outcome(self, call: Call, outcome: Outcome, stamps: dict[Key, int],
                        claims: Claims, started: float) -> list[Key]:
        fetch_secs = self.clock() - started
        unmatched: list[Key] = []
        for key in call.keys:
            if key in outcome.found:
                body, meta = outcome.found[key]
                entry = self.entry(key, body, fetch_secs, stamps[key], meta)
                self.store(key, entry)
                self.settle(key, claims[key], entry, None)
            elif key in outcome.errors:
                self._fail(key, stamps[key], outcome.errors[key], claims[key])
            elif call.names_one:
                self._fail(key, stamps[key], ApiError(502, "UpstreamUnavailable",
                           "AWS answered without the item asked for", transient=True),
                           claims[key])
            else:
                unmatched.append(key)
        stamp = min(stamps.values())
        for member, body in outcome.extra.items():  # each warms its single-read key
            self.store(member, self.entry(member, body, fetch_secs, stamp, ()))
        return unmatched

    def entry(self, key: Key, body: bytes, fetch_secs: float, stamp: int,
              meta: tuple[tuple[str, str], ...]) -> Entry:
        return policy.new_entry(body, self.clock(), self.ttl[key.limits()], self._jitter(),
                                self._refresh_ahead, self.settings.stale_if_error_secs,
                                fetch_secs, stamp, meta)

    def store(self, key: Key, entry: Entry) -> bool:
        """Cache ``entry`` unless something newer than its fetch happened to the key."""
        if not self.caches(key) or not self.generations.allows(
                key, entry.stamp, self.cache.peek(key)):
            return False
        self.cache.put(key, entry)
        return True

    def drop(self, key: Key) -> None:
        """A definite answer: forget the key; no fetch that started before brings it back."""
        self.cache.drop(key)
        self.generations.dropped(key)

    def _fail(self, key: Key, stamp: int, error: ApiError,
              claim: asyncio.Future[Entry]) -> None:
        current = self.cache.peek(key)
        if current is None or current.stamp <= stamp:  # else a newer fetch answered already
            if not error.transient:
                self.drop(key)
            elif current is not None:
                policy.back_off(current, self.clock())
        self.settle(key, claim, None, error)

    def settle(self, key: Key, claim: asyncio.Future[Entry], entry: Entry | None,
               error: BaseException | None) -> None:
        if self.in_flight.get(key) is claim:
            del self.in_flight[key]
        if claim.done():
            return
        if entry is not None:
            claim.set_result(entry)
        else:
            claim.set_exception(error or Released())
            claim.exception()  # retrieved: nobody may be waiting on it
