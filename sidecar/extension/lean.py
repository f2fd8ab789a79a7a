"""The serving side's imports (aiohttp, aiobotocore), at the least CPU they can cost.

Lambda mode pays for these imports on every cold start, at the function's share of a vCPU
wherever they run after INIT (README, Cold start), so two costs that buy nothing are avoided:

- The garbage collector's passes during the imports: they only allocate, and a dozen full
  passes walk the growing heap for nothing. It is off until the daemon serves (serve_lambda
  turns it back on), when everything loaded by then is frozen out of its sight for good.
- aiohttp makes two default client SSL contexts when it is imported, and each loads the
  system's CA store (about 25 ms of CPU apiece). Nothing here uses them: aiobotocore passes
  its own context (with botocore's CA bundle) on every connection. So they are made without
  the store. A context without CAs trusts nothing: were one ever used, its connections would
  fail verification, never pass unverified.

Standard library only.
"""

from __future__ import annotations

import gc
import ssl
from typing import Any


def import_serving() -> None:
    """Import ``serve`` (and with it aiohttp and aiobotocore) with the collector off and
    aiohttp's default contexts left empty."""
    gc.disable()
    default_context = ssl.create_default_context

    def without_store(purpose: Any = ssl.Purpose.SERVER_AUTH, **_: Any) -> ssl.SSLContext:
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, against no CA at all

    ssl.create_default_context = without_store
    ssl.SSLContext.set_default_verify_paths = lambda self: None  # type: ignore[method-assign]
    try:
        import aiohttp.connector  # noqa: F401  (its contexts are made here, now)
    finally:
        ssl.create_default_context = default_context
        del ssl.SSLContext.set_default_verify_paths  # the C base's method again
    import sidecar.extension.serve  # noqa: F401

