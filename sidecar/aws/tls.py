"""One verifying TLS context for every AWS client, instead of one per client.

aiobotocore builds each client's TLS context on its first call and loads the CA bundle into it
(botocore's, or ``AWS_CA_BUNDLE``): about 45 ms of CPU on the development machine, paid again
for every service, region and role. In Lambda that CPU is the function's cold start (README,
Cold start), so the contexts are shared: one per ``verify`` setting, made once, never changed
after (a context is safe to share between connections; aiohttp shares its own defaults).

A CA bundle named by path is identified by its size and modification time as well: one
replaced in place is loaded again for the clients made after that. Only the plain case is
shared: a client with a client certificate or a proxy gets its own, as
aiobotocore makes them (both add to the context). This overrides
``AIOHTTPSession._build_ssl_contexts`` (in aiobotocore 3.10, which constraints.txt pins, it
runs on a worker thread: hence the lock); with a version that has no such method (2.13, the
oldest supported, builds its contexts elsewhere) it is never called and each client makes its
own context, as before.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any, ClassVar

from aiobotocore.httpsession import AIOHTTPSession


class SharedContextSession(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's HTTP session (``AioConfig(http_session_cls=...)``) whose verifying TLS
    context is shared by every client with the same ``verify`` (True, a CA bundle's path, or
    False)."""

    _contexts: ClassVar[dict[object, ssl.SSLContext]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def _build_ssl_contexts(self, proxy_url: Any) -> tuple[Any, Any]:
        if proxy_url or getattr(self, "_cert_file", None):
            return super()._build_ssl_contexts(proxy_url)  # type: ignore[no-any-return]
        key = _bundle_key(getattr(self, "_verify", True))
        with self._lock:  # clients made at once wait for the first one's context
            context = self._contexts.get(key)
            if context is None:
                context, _ = super()._build_ssl_contexts(None)
                self._contexts[key] = context
        return context, None


def _bundle_key(verify: object) -> object:
    """What identifies a context: ``verify``, and for a CA bundle's path (``AWS_CA_BUNDLE``)
    also the file's size and modification time, so that a bundle replaced in place (a CA
    rotated in or out) is loaded again for the clients made after it, as it was when each
    client loaded its own."""
    if not isinstance(verify, str):
        return verify
    try:
        found = os.stat(verify)
    except OSError:  # aiobotocore's own load reports it
        return verify
    return verify, found.st_size, found.st_mtime_ns
