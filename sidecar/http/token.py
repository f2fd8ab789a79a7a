"""The token every request but /ping must carry, compared in constant time.

A ``file://`` token is re-read when the file changes (checked at most once a second, by its
inode, size and modification time), so the token can be rotated without a restart.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable

from sidecar.config.settings import ConfigError, read_token_file
from sidecar.core import logs

CHECK_EVERY_SECS = 1.0


class TokenSource:
    def __init__(self, token: str, path: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._token = token.encode()
        self._path = path
        self._clock = clock
        self._checked = clock()
        self._signature = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        if self._path is None:
            return None
        try:
            found = os.stat(self._path)
        except OSError:
            return None
        return found.st_ino, found.st_size, found.st_mtime_ns

    def _refresh(self) -> None:
        signature = self._stat()
        if signature == self._signature or self._path is None:
            return
        self._signature = signature
        try:
            self._token = read_token_file(self._path, "the token file").encode()
        except ConfigError:
            logs.warn("the token file changed but cannot be read; the previous token stays")
            return
        logs.info("the token file changed; the new token is in effect")

    def matches(self, given: str) -> bool:
        if self._path is not None:
            now = self._clock()
            if now - self._checked >= CHECK_EVERY_SECS:
                self._checked = now
                self._refresh()
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._token)
