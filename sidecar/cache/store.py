"""An LRU of ready-to-send response bodies, bounded by item count and by bytes.

Pure data structure: no asyncio, no AWS, no clock of its own. Entries carry their timestamps; the
resolver decides what is fresh. Built on ``cachetools.LRUCache`` (bounded by the bytes of the
entries: bodies, kept headers and a fixed overhead each; recency updated on every read); the
item bound is enforced on top of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cachetools import Cache as _PlainCache
from cachetools import LRUCache

from sidecar.core.key import Key


@dataclass(slots=True)
class Entry:
    """A cached answer. Times are on the resolver's monotonic clock, in seconds.

    The body and its times are fixed; the bookkeeping below them (``last_read`` on every hit,
    the failure backoff) changes in place.
    """

    body: bytes
    fetched_at: float
    fresh_until: float
    refresh_at: float
    keep_until: float
    # How long before expiry a refresh must start to land in time (from the fetch's duration).
    lead: float = 0.0
    last_read: float = 0.0
    # After a failed refetch: until when the stale body is served without asking AWS again.
    retry_at: float = 0.0
    failures: int = 0
    # The generation of the fetch that produced this entry: a fetch that started earlier never
    # replaces it (see the resolver).
    stamp: int = 0
    # When a refresh-ahead of this entry started (0: none): while it runs late, readers get
    # this body as stale rather than wait for AWS.
    refresh_started: float = 0.0
    # Response headers kept with the body (S3: Content-Type, ETag, Last-Modified).
    meta: tuple[tuple[str, str], ...] = ()


# What an entry costs beyond its body: the Entry object, its key, the LRU's links and the dict
# slot (measured with tracemalloc at about 400-600 bytes for a typical key). Counted so that
# the byte bound holds for many small entries too, not only for large bodies.
ENTRY_OVERHEAD = 512


def entry_size(entry: Entry) -> int:
    """The bytes an entry is counted for: its body, the headers kept with it, the overhead."""
    return len(entry.body) + ENTRY_OVERHEAD + sum(
        len(name) + len(value) for name, value in entry.meta)


class _EvictingLru(LRUCache[Key, Entry]):
    """cachetools' LRU, telling its owner which key it evicts (by bytes or by count)."""

    def __init__(self, max_bytes: int, on_evict: Callable[[Key, str], None]) -> None:
        super().__init__(maxsize=max_bytes, getsizeof=entry_size)
        self.on_evict = on_evict
        self.cause = "bytes"

    def popitem(self) -> tuple[Key, Entry]:
        key, entry = super().popitem()
        self.on_evict(key, self.cause)
        return key, entry


def _ignore(key: Key, cause: str) -> None:
    pass


class Cache:
    """Least-recently-*read* eviction once either bound is passed.

    ``on_evict(key, cause)`` is told of every eviction (``cause`` is ``bytes`` or ``items``),
    never of an explicit ``drop``.
    """

    def __init__(self, max_items: int, max_bytes: int,
                 on_evict: Callable[[Key, str], None] = _ignore) -> None:
        self.max_items = max_items
        self._lru = _EvictingLru(max_bytes, on_evict)

    def get(self, key: Key) -> Entry | None:
        """The entry, fresh or not, marking it most recently used."""
        try:
            return self._lru[key]  # cheaper than LRUCache.get on the hit path
        except KeyError:
            return None

    def put(self, key: Key, entry: Entry) -> None:
        if self.max_items <= 0:
            return
        try:
            self._lru.cause = "bytes"
            self._lru[key] = entry
        except ValueError:
            # A single body larger than the whole byte budget: serve it, never cache it.
            self._lru.pop(key, None)
            return
        self._lru.cause = "items"
        while len(self._lru) > self.max_items:
            self._lru.popitem()

    def peek(self, key: Key) -> Entry | None:
        """The entry without marking it used (for bookkeeping, not for serving)."""
        try:
            entry: Entry = _PlainCache.__getitem__(self._lru, key)
        except KeyError:
            return None
        return entry

    def entries(self) -> Iterator[Entry]:
        return iter(list(self._lru.values()))

    def drop(self, key: Key) -> None:
        self._lru.pop(key, None)

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, key: object) -> bool:
        return key in self._lru

    @property
    def max_bytes(self) -> int:
        return int(self._lru.maxsize)

    @property
    def bytes_held(self) -> int:
        return int(self._lru.currsize)
