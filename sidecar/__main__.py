"""Entry point: picks the mode (Lambda extension, standalone, demo).

Lambda mode keeps the path to the register call free of heavy imports: only the standard library
and the stdlib-only config module load before the listener is bound and the extension registered.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from sidecar import __version__

if TYPE_CHECKING:
    from sidecar.config import Settings


def _check_region(settings: Settings) -> None:
    if settings.region is None:
        import botocore.session

        if not botocore.session.get_session().get_config_variable("region"):
            from sidecar.config import ConfigError

            raise ConfigError("no AWS region: set AWS_REGION (or a region in the profile)")


def standalone(demo: bool) -> int:
    from sidecar import config, hardening, logs

    if demo:
        from sidecar import demo as demo_mode

        endpoint = demo_mode.start_fake_aws()
        demo_mode.prepare_environment(endpoint)
        demo_mode.seed(endpoint)
    try:
        settings, warnings = config.load()
        _check_region(settings)
    except config.ConfigError as exc:
        logs.fatal_line(str(exc))
        return 2
    logs.setup(settings.log_level, settings.log_format)
    for warning in warnings:
        logs.warn(warning)
    logs.info("starting", version=__version__, **settings.describe(), **hardening.state())

    from sidecar.daemon import run_standalone
    from sidecar.listener import bind
    from sidecar.runloop import run

    try:
        sock = bind(settings.port)
    except OSError as exc:
        logs.fatal_line(f"cannot listen on 127.0.0.1:{settings.port} "
                        f"(PARAMETERS_SECRETS_EXTENSION_HTTP_PORT): {exc.strerror}")
        return 1
    if demo:
        print(demo_mode.banner(settings.port), flush=True)
    run(run_standalone(settings, sock))
    return 0


def healthcheck() -> int:
    import http.client

    port = os.environ.get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "").strip() or "2773"
    try:
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=2)
        conn.request("GET", "/ping")
        healthy = conn.getresponse().read() == b"healthy"
    except (OSError, ValueError, http.client.HTTPException):
        healthy = False
    print("healthy" if healthy else "unhealthy")
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if not arguments and os.environ.get("AWS_LAMBDA_RUNTIME_API"):
        # The Lambda launcher passes no arguments: straight to the register call, without
        # even argparse (every import before it is added to the function's cold start).
        from sidecar.extension import run_extension

        return run_extension()
    import argparse

    parser = argparse.ArgumentParser(
        prog="parameters-secrets-sidecar",
        description="Local HTTP cache for AWS SSM parameters and Secrets Manager secrets.",
    )
    parser.add_argument("--demo", action="store_true",
                        help="start an embedded fake AWS with sample data and print curl lines")
    parser.add_argument("--healthcheck", action="store_true",
                        help="exit 0 if a daemon answers /ping on the configured port, else 1 "
                             "(for container HEALTHCHECKs; needs no curl)")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(arguments)
    if args.healthcheck:
        return healthcheck()
    if os.environ.get("AWS_LAMBDA_RUNTIME_API") and not args.demo:
        from sidecar.extension import run_extension

        return run_extension()
    from sidecar.hardening import harden

    missed = harden()  # before any secret can be in memory
    if missed:
        print(f"[parameters-secrets-sidecar] WARN could not apply: {', '.join(missed)}",
              flush=True)
    return standalone(args.demo)


if __name__ == "__main__":
    sys.exit(main())
