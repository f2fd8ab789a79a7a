"""Log lines on stdout: ``[parameters-secrets-sidecar] LEVEL message key=value`` or JSON lines.

Callers pass names and outcomes as ``fields``; nothing here ever sees a value or the token, and
tracebacks are reduced to the exception's type so that no third-party message can leak one.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from sidecar import NAME
from sidecar.core import fatal

LOGGER = logging.getLogger("sidecar")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "error": logging.ERROR, "none": logging.CRITICAL + 10}
_WORDS = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN",
          logging.ERROR: "ERROR", logging.CRITICAL: "ERROR"}
_UNPRINTABLE = {c: f"\\x{c:02x}" for c in [*range(32), 127]}


def _clean(value: object) -> str:
    """One printable token: no newline can forge a log line."""
    return str(value).translate(_UNPRINTABLE)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = dict(getattr(record, "fields", {}))
    if record.exc_info and record.exc_info[0] is not None:
        fields["exception"] = record.exc_info[0].__name__
    if record.name != LOGGER.name:
        fields["source"] = record.name
    return fields


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        word = _WORDS.get(record.levelno, "INFO")
        parts = [f"[{NAME}] {word} {_clean(record.getMessage())}"]
        parts.extend(f"{k}={_clean(v)}" for k, v in _fields(record).items())
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = {"timestamp": f"{stamp}.{int(record.msecs):03d}Z",
                "level": _WORDS.get(record.levelno, "INFO"), "logger": NAME,
                "message": record.getMessage(), **_fields(record)}
        return json.dumps(line, default=str)


LOG_FILE_NAME = "parameters-secrets-sidecar.log"
LOG_FILE_BYTES = 10 * 1024 * 1024  # rotated as the Agent's log is: 10 MB, 5 kept
LOG_FILES_KEPT = 5


def file_path() -> str:
    """Where ``log_to_file`` writes: systemd's ``LogsDirectory`` if given, else ``./logs``."""
    import os

    directory = os.environ.get("LOGS_DIRECTORY", "").split(":")[0] or "logs"
    return os.path.join(directory, LOG_FILE_NAME)


def _client_fault_at_debug(record: logging.LogRecord) -> bool:
    """aiohttp's server logs a request it cannot parse (a client's malformed HTTP, answered
    400) at ERROR, one line a request: any local client could fill the log (CloudWatch, in
    Lambda) at will. It is the client's fault, not the daemon's: DEBUG, like every request."""
    fault = record.exc_info[1] if record.exc_info else None
    if fault is not None and any(kind.__module__ == "aiohttp.http_exceptions"
                                 for kind in type(fault).__mro__):
        if not LOGGER.isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    return True


def setup(level: str, fmt: str, log_file: str | None = None) -> None:
    """Route our logger, and other libraries' warnings, to stdout (or, when asked, a rotated
    file) in the chosen format. Log lines never hold a value or the token, so a log file
    breaks no "nothing on disk" promise; it is still only written when asked for."""
    handler: logging.Handler = logging.StreamHandler(sys.stdout)
    if log_file is not None:
        import os
        from logging.handlers import RotatingFileHandler

        os.makedirs(os.path.dirname(log_file) or ".", mode=0o750, exist_ok=True)
        handler = RotatingFileHandler(log_file, maxBytes=LOG_FILE_BYTES,
                                      backupCount=LOG_FILES_KEPT, encoding="utf-8")
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(_LEVELS[level])
    LOGGER.propagate = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries stay at WARNING whatever our level: botocore's DEBUG output holds response
    # bodies, which are secret values.
    root.setLevel(max(_LEVELS[level], logging.WARNING))
    for noisy in ("aiohttp.access", "botocore", "aiobotocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(_LEVELS[level], logging.WARNING))
    server = logging.getLogger("aiohttp.server")
    if _client_fault_at_debug not in server.filters:
        server.addFilter(_client_fault_at_debug)


def debug_on() -> bool:
    return LOGGER.isEnabledFor(logging.DEBUG)


def log(level: int, message: str, **fields: object) -> None:
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, message, extra={"fields": fields})


def debug(message: str, **fields: object) -> None:
    log(logging.DEBUG, message, **fields)


def info(message: str, **fields: object) -> None:
    log(logging.INFO, message, **fields)


def warn(message: str, **fields: object) -> None:
    log(logging.WARNING, message, **fields)


def error(message: str, **fields: object) -> None:
    log(logging.ERROR, message, **fields)


def fatal_line(message: str) -> None:
    """The one line printed for a fatal start-up problem, before logging may be set up."""
    fatal.fatal_line(message)
