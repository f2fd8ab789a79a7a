"""Freshness as small pure functions of an entry and the time (the cache's ``Clock``).

- An entry is fresh until ``fresh_until`` (its TTL shortened by a random 0-10%, so that fleets
  started together do not refresh in lockstep). Past ``refresh_at`` (``refresh_ahead`` of its
  life) a read also refreshes it in the background when the next read is likely to come too
  late (judged by the gap since the previous read and the time a fetch takes).
- After expiry it may still be served ``stale`` until ``keep_until`` (``STALE_IF_ERROR_SECS``
  past expiry), but only when AWS fails or is slow: after a failure the key backs off (1 s,
  doubling up to 8 s), and its readers get the stale body meanwhile.
- ``Age`` is whole seconds since the fetch; ``maxAge`` asks for an entry younger than that.
"""

from __future__ import annotations

import math

from sidecar.cache.store import Entry

TTL_JITTER = 0.1
MIN_REFRESH_LEAD_SECS = 0.05
FAILURE_BACKOFF_SECS = 1.0
MAX_FAILURE_BACKOFF_SECS = 8.0


def new_entry(body: bytes, now: float, ttl: float, jitter: float, refresh_ahead: float | None,
              stale_secs: float, fetch_secs: float, stamp: int,
              meta: tuple[tuple[str, str], ...] = ()) -> Entry:
    """An entry fetched at ``now`` (``jitter`` in [0, 1) shortens its life by up to 10%)."""
    life = ttl * (1.0 - TTL_JITTER * jitter)
    return Entry(body=body, fetched_at=now, fresh_until=now + life,
                 refresh_at=now + life * refresh_ahead if refresh_ahead else math.inf,
                 keep_until=now + life + stale_secs,
                 lead=max(MIN_REFRESH_LEAD_SECS, 2 * fetch_secs), last_read=now, stamp=stamp,
                 meta=meta)


def is_fresh(entry: Entry, now: float) -> bool:
    return now < entry.fresh_until


def is_kept(entry: Entry, now: float) -> bool:
    """Whether the entry may still be served stale (it may not once past ``keep_until``)."""
    return now < entry.keep_until


def age(entry: Entry, now: float) -> int:
    return int(now - entry.fetched_at)


def is_young(entry: Entry | None, now: float, max_age: int) -> bool:
    """Whether ``entry`` was fetched less than ``max_age`` seconds ago."""
    return entry is not None and now - entry.fetched_at < max_age


def due_for_refresh(entry: Entry, now: float) -> bool:
    """Past its refresh point, not backing off, and the next read (at the pace of the last
    two) would likely come after expiry, too late to refresh it in time."""
    return now >= entry.refresh_at and now >= entry.retry_at and \
        now + (now - entry.last_read) + entry.lead >= entry.fresh_until


def stale_reason(entry: Entry, now: float, in_flight: bool) -> str | None:
    """Why a reader of this expired (still kept) entry gets it at once rather than wait for
    AWS, or None (it waits). With a fetch in flight: a refresh that started while the entry
    was fresh is landing late, or a retry after failures runs; without: backing off."""
    if in_flight:
        if entry.failures:
            return "retrying"
        return "refresh_late" if entry.refresh_started > 0 else None
    return "backoff" if entry.failures else None


def back_off(entry: Entry, now: float) -> None:
    """After a failed refetch: serve ``entry`` stale without asking AWS for a while, longer
    after each failure (1 s, 2 s, 4 s, 8 s)."""
    if now < entry.retry_at:
        return  # another failure already backed off
    entry.retry_at = now + min(FAILURE_BACKOFF_SECS * 2 ** entry.failures,
                               MAX_FAILURE_BACKOFF_SECS)
    entry.failures += 1
