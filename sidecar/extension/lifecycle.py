"""Lambda mode: the Extensions API lifecycle (SPEC section 6). Knows nothing about caching.

Lambda ends INIT only when the runtime and every extension have called ``event/next``. So:
read config, bind the listener, register, and then call ``event/next`` from a thread
(``EventPump``) at the moment ``policy.plan`` picks: at once, before aiohttp and aiobotocore are
even imported (one vCPU or more after INIT), or once the daemon serves and any prefetch has
landed, bounded (a smaller function, whose handler gets less CPU than INIT; or INIT off the
request path). Either way the socket was listening before register: a client that connects
early waits in the listen queue instead of being refused. INVOKE events are acknowledged at
once by the pump's next call, so an invoke never waits for the extension.
"""

from __future__ import annotations

import os
import sys
import time

from sidecar import NAME
from sidecar.config import settings as config
from sidecar.core import fatal
from sidecar.extension import policy
from sidecar.extension.api import ExtensionsApi, ExtensionsApiError, fail_init
from sidecar.extension.pump import EventPump, report_failure
from sidecar.http.listener import ListenError, bind

NAME_VARIABLE = "PARAMETERS_SECRETS_SIDECAR_EXTENSION_NAME"  # set by the layer's launcher


def extension_name() -> str:
    """The launcher's file name: Lambda registers each extension under it."""
    configured = os.environ.get(NAME_VARIABLE)
    if configured:
        return configured
    if getattr(sys, "frozen", False):  # the self-contained binary is its own launcher
        path = os.environ.get("STATICX_PROG_PATH") or sys.argv[0]
        return os.path.basename(path) or NAME
    return NAME


def run_extension() -> int:
    started = time.monotonic()
    name = extension_name()
    api = ExtensionsApi(os.environ["AWS_LAMBDA_RUNTIME_API"], name)
    try:
        settings, warnings = config.load()
    except config.ConfigError as exc:
        fail_init(api, "ConfigInvalid", str(exc))
        return 2
    try:
        listeners = bind(settings)  # every socket, before register
    except ListenError as exc:
        fail_init(api, "ListenFailed", str(exc))
        return 1
    try:
        api.register(settings.managed_instances())
    except ExtensionsApiError as exc:
        listeners.close()
        fatal.fatal_line(f"could not register with the Lambda Extensions API: {exc}")
        return 1
    registered_ms = round((time.monotonic() - started) * 1000, 1)
    pump = EventPump(api)
    plan = policy.plan(settings, os.environ)
    # Without a wait, INIT is done as far as this extension is concerned; with one, serve_lambda
    # releases the pump once serving (or the bound does).
    pump.start(plan.bound_secs if plan.wait else 0.0)
    # Only now what the register path could do without: logging, and the hardening (before
    # any secret is in memory: nothing has been fetched yet).
    from sidecar.core import hardening, logs

    missed = hardening.harden()
    logs.setup(settings.log_level, settings.log_format)
    if missed:
        logs.warn("could not apply: " + ", ".join(missed))
    for warning in warnings:
        logs.warn(warning)
    logs.info("starting", mode="lambda", extension=name, register_ms=registered_ms,
              events=",".join(api.events), init_type=settings.initialization_type or "unknown",
              init_wait="prefetch" if plan.prefetch else "serving" if plan.wait else "no",
              init_reason=plan.reason, **settings.describe(), **hardening.state())
    try:
        from sidecar.core.runloop import run
        from sidecar.extension.lean import import_serving

        import_serving()
        from sidecar.extension.serve import serve_lambda

        return run(serve_lambda(settings, listeners, api, pump, plan.prefetch))
    except Exception as exc:
        report_failure(api, pump, f"the extension failed: {type(exc).__name__}")
        return 1
    finally:
        listeners.close()  # the Unix socket's file too, whatever happened


