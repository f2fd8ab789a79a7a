"""Entry point: picks the mode (Lambda extension, standalone, demo).

Lambda mode keeps the path to the register call free of heavy imports: only the standard library
and the stdlib-only config module load before the listener is bound and the extension registered.
"""

from __future__ import annotations

import os
import sys

from sidecar import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the register path)
LOCAL_FILE = "PARAMETERS_SECRETS_EXTENSION_LOCAL_FILE"  # as config.settings.LOCAL_FILE

if TYPE_CHECKING:
    import http.client

    from sidecar.config.settings import Settings


def _check_region(settings: Settings) -> None:
    if settings.region is None:
        import botocore.session

        if not botocore.session.get_session().get_config_variable("region"):
            from sidecar.config.settings import ConfigError

            raise ConfigError("no AWS region: set AWS_REGION (or a region in the profile)")


def standalone(demo: bool, config_file: str | None = None) -> int:
    from sidecar.config import settings as config
    from sidecar.core import hardening, logs

    if demo:
        from sidecar import demo as demo_mode

        endpoint = demo_mode.start_fake_aws()
        demo_mode.prepare_environment(endpoint)
        demo_mode.seed(endpoint)
    try:
        settings, warnings = config.load(config_file=config_file)
        if settings.local_file is None:  # local mode makes no AWS call: no region needed
            _check_region(settings)
        log_file = logs.file_path() if settings.log_to_file else None
    except config.ConfigError as exc:
        logs.fatal_line(str(exc))
        return 2
    try:
        logs.setup(settings.log_level, settings.log_format, log_file)
    except OSError as exc:
        logs.fatal_line(f"cannot write the log file {log_file!r} (log_to_file): {exc.strerror}")
        return 2
    for warning in warnings:
        logs.warn(warning)
    logs.info("starting", version=__version__, **settings.describe(), **hardening.state())

    from sidecar.core.runloop import run
    from sidecar.daemon import StartupError, run_standalone
    from sidecar.http.listener import ListenError, bind

    try:
        listeners = bind(settings)
    except ListenError as exc:
        logs.fatal_line(str(exc))
        return 1
    if demo:
        print(demo_mode.banner(settings.port), flush=True)
    try:
        run(run_standalone(settings, listeners))
    except StartupError as exc:
        logs.fatal_line(str(exc))
        return 1
    finally:
        listeners.close()  # a failed start leaves no socket file behind either
    return 0


def configured_port(config_file: str | None) -> int:
    """The port the daemon would listen on with this environment and ``config_file``, by the
    daemon's own rules (the variable wins over the file, the file over the default). Only the
    port's inputs are read, so a shell without the daemon's token can ask too."""
    from sidecar.config.agent_file import load_file
    from sidecar.config.settings import TOKEN_VARIABLES, load

    variables = TOKEN_VARIABLES
    if config_file is not None:
        listed = load_file(config_file).get("token_variables", TOKEN_VARIABLES)
        variables = listed if isinstance(listed, tuple) else TOKEN_VARIABLES
    env = dict.fromkeys(variables, "unused")  # load() wants a token; the port ignores it
    variable = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"
    if variable in os.environ:
        env[variable] = os.environ[variable]
    return load(env, config_file)[0].port


def _unix_connection(path: str) -> http.client.HTTPConnection:
    """An HTTP connection over the Unix socket at ``path`` (README, "Where it listens")."""
    import http.client
    import socket

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
            self.sock = sock

    return UnixConnection("localhost", timeout=2)


def healthcheck(config_file: str | None = None, endpoint: str | None = None) -> int:
    """0 when a daemon answers /ping on the port the daemon itself would use, or on the Unix
    socket ``endpoint`` names (``unix:///path``)."""
    import http.client

    from sidecar.config.agent_file import AgentConfigError
    from sidecar.config.settings import ConfigError

    try:
        if endpoint and not endpoint.startswith("unix:///"):
            raise ConfigError(f"--healthcheck {endpoint!r}: expected unix:///path/to/socket "
                              "(or nothing: the configured port)")
        port = 0 if endpoint else configured_port(config_file)
    except (ConfigError, AgentConfigError) as exc:  # no daemon can run with this configuration
        print("unhealthy")
        print(f"[parameters-secrets-sidecar] ERROR {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        conn = _unix_connection(endpoint[len("unix://"):]) if endpoint \
            else http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/ping")
        healthy = conn.getresponse().read() == b"healthy"
    except (OSError, http.client.HTTPException):
        healthy = False
    print("healthy" if healthy else "unhealthy")
    return 0 if healthy else 1


def check_config(path: str) -> int:
    from sidecar.config.agent_file import AgentConfigError, load_file

    try:
        load_file(path)
    except AgentConfigError as exc:
        print(f"[parameters-secrets-sidecar] ERROR {exc}", flush=True)
        return 2
    print(f"[parameters-secrets-sidecar] {path}: valid", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if not arguments and os.environ.get("AWS_LAMBDA_RUNTIME_API"):
        # The Lambda launcher passes no arguments: straight to the register call, without
        # even argparse (every import before it is added to the function's cold start).
        from sidecar.extension.lifecycle import run_extension

        return run_extension()
    if arguments[:1] == ["env-resolve"]:
        # The binary layer's Lambda exec wrapper (README, "Values in the environment"): the
        # standard library only, before the runtime starts.
        from sidecar.envref.wrapper import main as env_resolve

        return env_resolve(arguments[1:])
    if arguments[:1] == ["exec"]:
        from sidecar.envref.command import main as exec_command

        return exec_command(arguments[1:])
    import argparse

    parser = argparse.ArgumentParser(
        prog="parameters-secrets-sidecar",
        description="Local HTTP cache for AWS SSM parameters and Secrets Manager secrets.",
        epilog="parameters-secrets-sidecar exec [OPTIONS] -- COMMAND [ARGS...] runs COMMAND "
               "with the {{resolve:...}} references in its environment resolved (exec --help).",
    )
    parser.add_argument("--demo", action="store_true",
                        help="start an embedded fake AWS with sample data and print curl lines")
    parser.add_argument("--healthcheck", nargs="?", const="", metavar="unix:///PATH",
                        help="exit 0 if a daemon answers /ping on the configured port (the "
                             "environment's, else --config FILE's), or on the Unix socket "
                             "given, else 1 (for container health checks; needs no curl)")
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="the Secrets Manager Agent's TOML configuration file (flat or "
                             "nested keys); environment variables override it")
    parser.add_argument("--check-config", metavar="FILE",
                        help="validate the Agent configuration FILE and exit (0 when valid)")
    parser.add_argument("--local", metavar="FILE",
                        help="answer from FILE (TOML, or JSON by its .json name) with no AWS "
                             "at all: parameters, secrets and S3 objects (README, Local mode; "
                             "PARAMETERS_SECRETS_EXTENSION_LOCAL_FILE)")
    parser.add_argument("--version", action="version", version=__version__)
    if arguments[:2] == ["sm", "start"]:
        # The Workload Credentials Provider's command line: `... sm start --config FILE`.
        arguments = arguments[2:]
    args = parser.parse_args(arguments)
    if args.healthcheck is not None:
        return healthcheck(args.config, args.healthcheck or None)
    if args.check_config:
        return check_config(args.check_config)
    if args.local is not None:
        os.environ[LOCAL_FILE] = args.local  # the option wins over the variable
    if args.demo and os.environ.get(LOCAL_FILE, "").strip():
        print("[parameters-secrets-sidecar] ERROR --demo serves its own fake AWS: it cannot "
              f"be used with --local ({LOCAL_FILE})", flush=True)
        return 2
    if os.environ.get("AWS_LAMBDA_RUNTIME_API") and not args.demo:
        from sidecar.extension.lifecycle import run_extension

        return run_extension()
    from sidecar.core.hardening import harden

    missed = harden()  # before any secret can be in memory
    if missed:
        print(f"[parameters-secrets-sidecar] WARN could not apply: {', '.join(missed)}",
              flush=True)
    return standalone(args.demo, args.config)


if __name__ == "__main__":
    sys.exit(main())
