"""The one clock the cache policy reads: monotonic, but moved forward by every jump of the wall
clock against it (a SnapStart restore, a resumed VM, a laptop waking up).

A process frozen in a snapshot and thawed days later sees its monotonic clock carry on as if
no time had passed, while the values it cached are days old. Every time the policy keeps
(fetched, fresh until, keep until) is on this clock, so one jump makes every entry exactly as
old as it really is: nothing from before a restore is served fresh, nor stale beyond its
wall-clock allowance, and ``Age`` stays true (review finding S3-4).
"""

from __future__ import annotations

import time
from collections.abc import Callable

# The wall clock moving by more than this against the monotonic clock means the process was
# frozen and thawed, or the machine slept. Smaller steps (NTP) are not worth acting on.
RESTORE_JUMP_SECS = 2.0


class Clock:
    """``now()`` in seconds; ``jumps`` counts the restores seen."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._monotonic = monotonic
        self._wall = wall
        self._offset = wall() - monotonic()  # wall minus monotonic, at the last check
        self._shift = 0.0  # the sum of the forward jumps seen
        self.jumps = 0

    def now(self) -> float:
        mono = self._monotonic()
        offset = self._wall() - mono
        drift = offset - self._offset
        if drift > RESTORE_JUMP_SECS:
            self._shift += drift  # frozen for ``drift`` seconds: everything is that much older
            self._offset = offset
            self.jumps += 1
        elif drift < -RESTORE_JUMP_SECS:
            self._offset = offset  # the wall clock was set back: time did not run backwards
        return mono + self._shift

    __call__ = now
