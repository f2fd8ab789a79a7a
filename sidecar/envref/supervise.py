"""``exec --watch``: COMMAND as a child, its references re-read at an interval, and a change
announced to it, as envconsul does (README, "Watching for changes").

- Every ``interval`` seconds ``reread`` is called; it gives the new state when a value changed
  (templates already rendered again), None when nothing changed or the re-read failed (it
  says why itself; the current values stay).
- On a change, ``signal`` mode sends COMMAND ``reload_signal``; ``restart`` mode sends
  ``kill_signal``, waits up to ``kill_timeout`` seconds, then SIGKILL, and starts COMMAND again
  with the new environment.
- SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 and SIGUSR2 are passed on to COMMAND. When COMMAND
  exits by itself the supervisor exits with its status (128 + N when signal N ended it), as a
  shell reports it; it is never restarted then.

Values live in this process's memory only: COMMAND gets them in the environment given to
``subprocess.Popen``; ``os.environ`` here is never changed.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from types import FrameType

SIGNAL, RESTART = "signal", "restart"
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
             signal.SIGUSR2)
_ENDING = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def status_of(returncode: int) -> int:
    """A child's exit status as a shell reports it: 128 + N for signal N."""
    return 128 - returncode if returncode < 0 else returncode


class Supervisor:
    def __init__(self, command: list[str], environ: dict[str, str], interval: float,
                 reread: Callable[[], dict[str, str] | None], on_change: str = SIGNAL,
                 reload_signal: int = signal.SIGHUP, kill_signal: int = signal.SIGTERM,
                 kill_timeout: float = 5.0, say: Callable[[str, str], None] | None = None) -> None:
        self._command = command
        self._environ = environ
        self._interval = interval
        self._reread = reread
        self._on_change = on_change
        self._reload_signal = reload_signal
        self._kill_signal = kill_signal
        self._kill_timeout = kill_timeout
        self._say = say or (lambda level, message: None)
        self._child: subprocess.Popen[bytes] | None = None
        self._ending = False

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self._command, env=self._environ)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        if signum in _ENDING:
            self._ending = True  # no restart now: COMMAND's end is the supervisor's
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    def _wait(self, until: float) -> int | None:
        """COMMAND's exit status if it exits before ``until`` (monotonic seconds), else None."""
        assert self._child is not None
        try:
            return status_of(self._child.wait(max(0.0, until - time.monotonic())))
        except subprocess.TimeoutExpired:
            return None

    def run(self) -> int:
        """Start COMMAND and supervise it until it exits; its exit status."""
        try:
            self._child = self._spawn()
        except FileNotFoundError:
            self._say("ERROR", f"{self._command[0][:256]!r}: command not found")
            return 127
        except OSError as exc:
            self._say("ERROR", f"{self._command[0][:256]!r} cannot be run: {exc.strerror}")
            return 126
        for signum in FORWARDED:
            signal.signal(signum, self._forward)
        next_read = time.monotonic() + self._interval
        while True:
            status = self._wait(next_read)
            if status is not None:
                return status
            next_read = time.monotonic() + self._interval
            if self._ending:
                continue  # COMMAND is stopping: wait for it, change nothing
            changed = self._reread()
            if changed is None:
                continue
            status = self._changed(changed)
            if status is not None:
                return status

    def _changed(self, environ: dict[str, str]) -> int | None:
        """Tell COMMAND; an exit status when COMMAND ended and must not be started again."""
        assert self._child is not None
        if self._on_change == SIGNAL:
            self._environ = environ
            name = signal.Signals(self._reload_signal).name
            self._say("INFO", f"a value changed: sending {name}")
            if self._child.poll() is None:
                self._child.send_signal(self._reload_signal)
            return None
        self._say("INFO", "a value changed: restarting the command")
        old = self._child
        if old.poll() is None:
            old.send_signal(self._kill_signal)
        try:
            old.wait(self._kill_timeout)
        except subprocess.TimeoutExpired:
            old.kill()
            old.wait()
        if self._ending:
            return status_of(old.returncode)
        self._environ = environ
        self._child = self._spawn()
        return None
