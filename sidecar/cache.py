"""An LRU of ready-to-send response bodies, bounded by item count and by bytes.

Pure data structure: no asyncio, no AWS, no clock of its own. Entries carry their timestamps; the
resolver decides what is fresh. Built on ``cachetools.LRUCache`` (bounded by the bytes of the
bodies, recency updated on every read); the item bound is enforced on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachetools import LRUCache

from sidecar.key import Key


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


def _body_size(entry: Entry) -> int:
    return len(entry.body)


class Cache:
    """Least-recently-*read* eviction once either bound is passed."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self._lru: LRUCache[Key, Entry] = LRUCache(maxsize=max_bytes, getsizeof=_body_size)

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
            self._lru[key] = entry
        except ValueError:
            # A single body larger than the whole byte budget: serve it, never cache it.
            self._lru.pop(key, None)
            return
        while len(self._lru) > self.max_items:
            self._lru.popitem()

    def drop(self, key: Key) -> None:
        self._lru.pop(key, None)

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, key: object) -> bool:
        return key in self._lru

    @property
    def bytes_held(self) -> int:
        return int(self._lru.currsize)
