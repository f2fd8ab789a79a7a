"""Process hardening at start: secrets stay in this process's memory and nowhere else.

- No core dumps (``RLIMIT_CORE`` 0): a crash never writes the cache to disk.
- Not dumpable (``PR_SET_DUMPABLE`` 0): another process of the same user cannot attach with
  ptrace or read ``/proc/<pid>/mem`` or ``environ``.
- The open-files soft limit raised to the hard limit: many local clients cannot run the daemon
  out of descriptors below what the platform allows (Lambda: 1024).
"""

from __future__ import annotations

import resource

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


def harden() -> list[str]:
    """Apply what the platform allows; the list says what could not be applied."""
    missed: list[str] = []
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        missed.append("core dumps")
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            missed.append("non-dumpable")
    except (OSError, AttributeError):
        missed.append("non-dumpable")
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        missed.append("open files limit")
    return missed


def state() -> dict[str, str]:
    """What the kernel says now, for the start-up log line."""
    core = resource.getrlimit(resource.RLIMIT_CORE)
    dumpable = "unknown"
    try:
        import ctypes

        dumpable = "true" if ctypes.CDLL(None).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) else "false"
    except (OSError, AttributeError):
        pass
    return {"core_dumps": "off" if core == (0, 0) else "on", "dumpable": dumpable}
