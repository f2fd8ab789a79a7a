"""Lambda mode: the Extensions API lifecycle (built in the Lambda issue)."""

from __future__ import annotations

from sidecar import logs


def run_extension() -> int:
    logs.fatal_line("Lambda mode is not implemented yet")
    return 1
