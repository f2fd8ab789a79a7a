"""Generations: a fetch that started earlier never overwrites newer state.

Every fetch takes a stamp (a counter) when it starts; an entry keeps its fetch's stamp; every
drop of a key (a definite answer from AWS, an eviction, a ``refreshNow``'s own fetch landing)
takes a stamp too. A result may be stored only if its stamp is newer than the cached entry's
and than the key's last drop. So a late refresh never puts back a rotated value, a deleted
parameter, or a key evicted meanwhile, whatever shape of read fetched it (single, batch member,
path member, prefetch item, S3 object).

Drops are remembered in a bounded LRU; when a record falls out, the floor rises to its stamp,
so a fetch older than every forgotten drop is refused too (a refused store only means the
answer is served without being cached: never a wrong answer).
"""

from __future__ import annotations

from cachetools import LRUCache

from sidecar.cache.store import Entry
from sidecar.core.key import Key

REMEMBERED_DROPS = 4096


class _DropLog(LRUCache[Key, int]):
    def __init__(self, size: int) -> None:
        super().__init__(maxsize=size)
        self.floor = 0

    def popitem(self) -> tuple[Key, int]:
        key, stamp = super().popitem()
        self.floor = max(self.floor, stamp)
        return key, stamp


class Generations:
    def __init__(self, remembered: int = REMEMBERED_DROPS) -> None:
        self._stamp = 0
        self._drops = _DropLog(remembered)

    def begin(self) -> int:
        """The stamp of a fetch starting now."""
        self._stamp += 1
        return self._stamp

    def dropped(self, key: Key) -> None:
        """``key`` left the cache (or its answer became definite): older fetches may not
        bring it back."""
        self._drops[key] = self.begin()

    def allows(self, key: Key, stamp: int, current: Entry | None) -> bool:
        """Whether a fetch stamped ``stamp`` may store ``key`` over ``current``."""
        if current is not None and current.stamp > stamp:
            return False
        return self._drops.get(key, self._drops.floor) < stamp
