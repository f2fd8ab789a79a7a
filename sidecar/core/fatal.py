"""The one line printed for a fatal start-up problem. Standard library only, and nothing
more than ``sys``: Lambda mode may need it before anything else is imported."""

from __future__ import annotations

import sys

from sidecar import NAME

_UNPRINTABLE = {c: f"\\x{c:02x}" for c in [*range(32), 127]}


def fatal_line(message: str) -> None:
    print(f"[{NAME}] ERROR {message.translate(_UNPRINTABLE)}", file=sys.stdout, flush=True)
