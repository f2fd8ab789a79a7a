"""The one line printed for a fatal start-up problem. Standard library only, and little of it:
Lambda mode may need it before anything else is imported (``json`` only when asked for)."""

from __future__ import annotations

import os
import sys
import time

from sidecar import NAME

_UNPRINTABLE = {c: f"\\x{c:02x}" for c in [*range(32), 127]}


def fatal_line(message: str) -> None:
    """``[parameters-secrets-sidecar] ERROR message``, or with ``AWS_LAMBDA_LOG_FORMAT=JSON``
    (any case) the same JSON object the logger writes, so that a start-up configuration
    error is as readable in CloudWatch's JSON view as every other line."""
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").strip().lower() == "json":
        import json

        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        line = json.dumps({"timestamp": f"{stamp}.{int(now * 1000) % 1000:03d}Z",
                           "level": "ERROR", "logger": NAME, "message": message})
    else:
        line = f"[{NAME}] ERROR {message.translate(_UNPRINTABLE)}"
    print(line, file=sys.stdout, flush=True)
