"""Freshness policy, the restore-aware clock and generations: pure, with fake clocks."""

from __future__ import annotations

import math

from sidecar.cache import policy
from sidecar.cache.clock import RESTORE_JUMP_SECS, Clock
from sidecar.cache.generations import Generations
from sidecar.core.key import SSM, Key


class Fake:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = 1.7e9

    def tick(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def _clock() -> tuple[Clock, Fake]:
    fake = Fake()
    return Clock(lambda: fake.mono, lambda: fake.wall), fake


def test_clock_follows_monotonic_time_and_ignores_small_steps() -> None:
    clock, fake = _clock()
    start = clock.now()
    fake.tick(5)
    fake.wall += RESTORE_JUMP_SECS / 2  # an NTP step: not a restore
    assert clock.now() == start + 5
    assert clock.jumps == 0


def test_clock_moves_forward_by_a_restore_jump_and_never_backwards() -> None:
    clock, fake = _clock()
    start = clock.now()
    fake.wall += 30 * 86400  # frozen for 30 days
    fake.tick(1)
    assert clock.now() == start + 1 + 30 * 86400
    assert clock.jumps == 1
    fake.wall -= 3600  # the wall clock set back: time does not run backwards
    assert clock.now() == start + 1 + 30 * 86400
    fake.tick(2)
    assert clock.now() == start + 3 + 30 * 86400


def test_entry_lifetimes() -> None:
    entry = policy.new_entry(b"v", now=10.0, ttl=100.0, jitter=0.5, refresh_ahead=0.8,
                             stale_secs=60.0, fetch_secs=0.2, stamp=7)
    assert entry.fresh_until == 10.0 + 95.0  # shortened by 5% of 10%
    assert entry.refresh_at == 10.0 + 95.0 * 0.8
    assert entry.keep_until == 10.0 + 95.0 + 60.0
    assert entry.lead == 0.4 and entry.stamp == 7
    assert math.isinf(policy.new_entry(b"v", 0, 1, 0, None, 0, 0, 1).refresh_at)
    assert policy.is_fresh(entry, 104.9) and not policy.is_fresh(entry, 105.0)
    assert policy.is_kept(entry, 164.9) and not policy.is_kept(entry, 165.0)
    assert policy.age(entry, 40.9) == 30
    assert policy.is_young(entry, 14.0, 5) and not policy.is_young(entry, 15.0, 5)
    assert not policy.is_young(None, 0.0, 5)


def test_refresh_ahead_waits_for_the_last_useful_read() -> None:
    entry = policy.new_entry(b"v", 0.0, 100.0, 0.0, 0.5, 0.0, 0.0, 1)
    entry.last_read = 59.0
    assert not policy.due_for_refresh(entry, 49.0)  # before the refresh point
    assert not policy.due_for_refresh(entry, 60.0)  # another read comes in time
    entry.last_read = 15.0
    assert policy.due_for_refresh(entry, 60.0)  # at this pace the next read is too late


def test_back_off_doubles_to_a_bound_and_serves_stale_meanwhile() -> None:
    entry = policy.new_entry(b"v", 0.0, 10.0, 0.0, None, 60.0, 0.0, 1)
    assert policy.stale_reason(entry, 11.0, in_flight=False) is None  # idle expiry: wait
    waits = []
    now = 11.0
    for _ in range(6):
        policy.back_off(entry, now)
        waits.append(entry.retry_at - now)
        now = entry.retry_at
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert policy.stale_reason(entry, now, in_flight=False) == "backoff"
    assert policy.stale_reason(entry, now, in_flight=True) == "retrying"
    late = policy.new_entry(b"v", 0.0, 10.0, 0.0, 0.5, 60.0, 0.0, 1)
    late.refresh_started = 6.0
    assert policy.stale_reason(late, 11.0, in_flight=True) == "refresh_late"


def test_generations_refuse_what_started_before_a_newer_state() -> None:
    generations = Generations(remembered=2)
    key, other = Key(SSM, "/a"), Key(SSM, "/b")
    early = generations.begin()
    late = generations.begin()
    newer = policy.new_entry(b"new", 0, 1, 0, None, 0, 0, late)
    assert generations.allows(key, late, None)
    assert not generations.allows(key, early, newer)  # a newer fetch answered first
    generations.dropped(key)
    assert not generations.allows(key, late, None)  # dropped (or evicted) since it started
    assert generations.allows(key, generations.begin(), None)
    # Forgotten drops raise the floor: older fetches of any key are refused, never wrong.
    generations.dropped(Key(SSM, "/c"))
    generations.dropped(Key(SSM, "/d"))
    assert not generations.allows(other, late, None)
