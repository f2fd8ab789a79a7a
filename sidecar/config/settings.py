"""Settings from the environment: one frozen object, every validation message in one place.

Names, defaults and meanings follow the AWS Parameters and Secrets Lambda Extension (SPEC section
5). A bad value raises ``ConfigError`` whose text is the one line the user sees: the variable, the
value and what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from sidecar.config import appconfig, listen
from sidecar.config.appconfig import AppConfigSettings
from sidecar.core.key import Key

# Standard library only, and little of it: Lambda mode loads this before the register call,
# and every millisecond here is added to the function's cold start. (No dataclasses, pathlib
# or the query parser unless a prefetch list is set.)

TOKEN_VARIABLES = ("AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN")
TOKEN_HEADERS = ("X-Aws-Parameters-Secrets-Token", "X-Vault-Token")
DEFAULT_PATH_PREFIX = "/v1/"
DEFAULT_MAX_ROLES = 20
DEFAULT_PREFETCH_BUFFER_RATIO = 0.8
LOG_LEVELS = ("debug", "info", "warn", "error", "none")
LOG_FORMATS = ("text", "json")
MAX_TTL_SECS = 86400
MAX_CACHE_ITEMS = 100_000
MAX_CACHE_MB = 1_048_576
# The byte bound's default (PARAMETERS_SECRETS_EXTENSION_MAX_CACHE_SIZE unset). The AWS
# extension's 1000 MB predates 1 MiB S3 objects and 4 MB path bodies, and would let ordinary
# reads outgrow a 128 MB function (review S3-6). In Lambda: this fraction of the function's
# memory, which the extension shares; elsewhere a small fixed figure.
DEFAULT_CACHE_MB = 64
LAMBDA_CACHE_DIVISOR = 8  # 1/8 of AWS_LAMBDA_FUNCTION_MEMORY_SIZE: 16 MB at 128 MB
MAX_TIMEOUT_MILLIS = 600_000
MAX_CONNECTIONS = 1000
MAX_STALE_IF_ERROR_SECS = 7 * 86400
DEFAULT_STALE_IF_ERROR_SECS = 3600
MAX_TOKEN_FILE_BYTES = 4096
DEFAULT_INBOUND_CONNECTIONS = 800  # as the Secrets Manager Agent's max_conn
MAX_INBOUND_CONNECTIONS = 10_000
DEFAULT_SHUTDOWN_GRACE_SECS = 5
MAX_SHUTDOWN_GRACE_SECS = 3600
PREFETCH_WAIT_CHOICES = ("auto", "true", "false")
INIT_MODES = ("auto", "wait", "early")  # when Lambda mode ends INIT: sidecar/extension/policy.py
DEFAULT_PREFETCH_WAIT_MILLIS = 2000
MAX_PREFETCH_WAIT_MILLIS = 60_000
MANAGED_INSTANCES = "lambda-managed-instances"
DEFAULT_S3_MAX_OBJECT_BYTES = 1024 * 1024
DEFAULT_METRICS_NAMESPACE = "ParametersSecretsSidecar"
MAX_S3_MAX_OBJECT_BYTES = 100 * 1024 * 1024
LOCAL_FILE = "PARAMETERS_SECRETS_EXTENSION_LOCAL_FILE"


class ConfigError(Exception):
    """A configuration problem; ``str(error)`` is the single line shown to the user."""


class Settings(NamedTuple):
    token: str
    token_source: str
    port: int = 2773
    cache_enabled: bool = True
    cache_items: int = 1000
    cache_bytes: int = DEFAULT_CACHE_MB * 1024 * 1024
    max_connections: int = 3
    log_level: str = "info"
    log_format: str = "text"
    ssm_ttl: int = 300
    secrets_ttl: int = 300
    ssm_timeout_ms: int = 0
    secrets_timeout_ms: int = 0
    refresh_ahead: float = 0.8
    stale_if_error_secs: int = DEFAULT_STALE_IF_ERROR_SECS
    coalesce: bool = True
    prefetch: tuple[Key, ...] = ()
    region: str | None = None
    token_file: str | None = None
    max_inbound_connections: int = DEFAULT_INBOUND_CONNECTIONS
    shutdown_grace_secs: int = DEFAULT_SHUTDOWN_GRACE_SECS
    initialization_type: str = ""
    prefetch_wait: bool = True  # when INIT waits (init_mode), it waits for prefetch too
    init_mode: str = "auto"
    prefetch_wait_ms: int = DEFAULT_PREFETCH_WAIT_MILLIS
    s3_ttl: int = 300
    s3_timeout_ms: int = 0
    s3_max_object_bytes: int = DEFAULT_S3_MAX_OBJECT_BYTES
    metrics_emf: bool = False
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    # From the Secrets Manager Agent's configuration file (``--config``); see agent_config.
    config_file: str | None = None
    token_headers: tuple[str, ...] = TOKEN_HEADERS
    token_variables: tuple[str, ...] = TOKEN_VARIABLES
    path_prefix: str = DEFAULT_PATH_PREFIX
    max_roles: int = DEFAULT_MAX_ROLES
    validate_credentials: bool = False
    ignore_transient_errors: bool = True
    prefetch_tags: tuple[tuple[str, str | None], ...] = ()
    prefetch_buffer_ratio: float = DEFAULT_PREFETCH_BUFFER_RATIO
    prefetch_jitter_secs: int = 0
    log_to_file: bool = False
    credentials_file: str | None = None
    # Listeners beyond the loopback port: config/listen.py, README "Where it listens".
    unix_socket: str | None = None
    unix_socket_mode: int = listen.DEFAULT_UNIX_SOCKET_MODE
    unix_socket_group: int | None = None
    bind_address: str | None = None
    allowed_clients: tuple[str, ...] = ()
    # Local mode: answer from this file, with no AWS (config/local_file.py; README, Local mode).
    local_file: str | None = None
    # The AppConfig agent's listener (port 2772): config/appconfig.py, README "AppConfig".
    appconfig: AppConfigSettings = AppConfigSettings()

    def __repr__(self) -> str:  # never the token
        return f"Settings(token=<redacted>, token_source={self.token_source!r}, ...)"

    def managed_instances(self) -> bool:
        return self.initialization_type == MANAGED_INSTANCES

    def caching_on(self) -> bool:
        """True when the cache can hold anything at all."""
        return self.cache_enabled and self.cache_items > 0

    def describe(self) -> dict[str, object]:
        """The effective configuration for the start-up log line; the token is never included."""
        return {
            "port": self.port,
            "cache_enabled": self.caching_on(),
            "cache_items": self.cache_items,
            "cache_mb": self.cache_bytes // (1024 * 1024),
            "ssm_ttl_secs": self.ssm_ttl,
            "secrets_ttl_secs": self.secrets_ttl,
            "ssm_timeout_ms": self.ssm_timeout_ms,
            "secrets_timeout_ms": self.secrets_timeout_ms,
            "max_connections": self.max_connections,
            "refresh_ahead": self.refresh_ahead,
            "stale_if_error_secs": self.stale_if_error_secs,
            "coalesce": self.coalesce,
            "prefetch_items": len(self.prefetch),
            "prefetch_tags": len(self.prefetch_tags),
            "init_mode": self.init_mode,
            "init_wait_bound_ms": self.prefetch_wait_ms,
            "max_inbound_connections": self.max_inbound_connections,
            "shutdown_grace_secs": self.shutdown_grace_secs,
            "s3_ttl_secs": self.s3_ttl,
            "s3_max_object_bytes": self.s3_max_object_bytes,
            "metrics_emf": self.metrics_emf,
            "log_level": self.log_level,
            "log_format": self.log_format,
            "region": self.region or "(botocore default)",
            "token": f"<redacted, from {self.token_source}>",
            "token_headers": ",".join(self.token_headers),
            "path_prefix": self.path_prefix,
            "max_roles": self.max_roles,
            "validate_credentials": self.validate_credentials,
            "config_file": self.config_file or "(none)",
            "unix_socket": self.unix_socket or "(none)",
            "bind_address": self.bind_address or "(none)",
            "local_file": self.local_file or "(none)",
            **self.appconfig.describe(),
        }


def _invalid(name: str, value: str, allowed: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is invalid: expected {allowed}")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    allowed = f"a whole number from {low} to {high}"
    try:
        value = int(raw.strip())
    except ValueError:
        raise _invalid(name, raw, allowed) from None
    if not low <= value <= high:
        raise _invalid(name, raw, allowed)
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise _invalid(name, raw, "true or false")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered == "warning":
        lowered = "warn"
    if lowered not in choices:
        raise _invalid(name, raw, "one of " + ", ".join(choices))
    return lowered


def _ttl(env: Mapping[str, str], name: str, shared: str | None, warnings: list[str]) -> int:
    """A TTL in seconds: 0..86400, larger values clamped with a warning (SPEC section 5)."""
    raw = env.get(name)
    source = name
    if (raw is None or raw.strip() == "") and shared is not None:
        raw, source = shared, "PARAMETERS_SECRETS_EXTENSION_TTL_SECS"
    if raw is None or raw.strip() == "":
        return 300
    allowed = f"a whole number of seconds from 0 to {MAX_TTL_SECS}"
    try:
        value = int(raw.strip())
    except ValueError:
        raise _invalid(source, raw, allowed) from None
    if value < 0:
        raise _invalid(source, raw, allowed)
    if value > MAX_TTL_SECS:
        warnings.append(f"{source}={value} is above the maximum; clamped to {MAX_TTL_SECS}")
        return MAX_TTL_SECS
    return value


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    allowed = "a number from 0 to 1 (0 or 1 turns it off)"
    try:
        value = float(raw.strip())
    except ValueError:
        raise _invalid(name, raw, allowed) from None
    if not 0.0 <= value <= 1.0:
        raise _invalid(name, raw, allowed)
    return value


def _namespace(env: Mapping[str, str]) -> str:
    name = "PARAMETERS_SECRETS_EXTENSION_METRICS_NAMESPACE"
    raw = env.get(name, "").strip()
    if not raw:
        return DEFAULT_METRICS_NAMESPACE
    if len(raw) > 255 or raw.startswith("AWS/") or not all(
            c.isalnum() or c in "._-/#:" for c in raw):
        raise _invalid(name, raw, "1-255 letters, digits and . _ - / # :, not starting with "
                                  "AWS/ (CloudWatch's rule)")
    return raw


def _log_level(env: Mapping[str, str]) -> str:
    name = "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL"
    if env.get(name, "").strip():
        return _choice(env, name, "info", LOG_LEVELS)
    # Lambda's own advanced logging control: honoured when ours is unset. Its vocabulary is wider
    # (TRACE, FATAL); map it onto ours rather than refuse to start over a platform setting.
    lambda_level = env.get("AWS_LAMBDA_LOG_LEVEL", "").strip().lower()
    mapped = {"trace": "debug", "debug": "debug", "info": "info", "warn": "warn",
              "warning": "warn", "error": "error", "fatal": "error"}
    return mapped.get(lambda_level, "info")


def read_token_file(path: str, variable: str) -> str:
    """A token file's contents, stripped of surrounding whitespace; at most 4 KiB."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_TOKEN_FILE_BYTES + 1)
        value = data.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{variable} names the token file {str(path)!r}, which cannot be read "
            f"({type(exc).__name__})"
        ) from None
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise ConfigError(f"{variable} names the token file {str(path)!r}, which is larger than "
                          f"{MAX_TOKEN_FILE_BYTES} bytes")
    if not value:
        raise ConfigError(f"{variable} names the token file {str(path)!r}, which is empty")
    return value


def read_token(env: Mapping[str, str]) -> tuple[str, str]:
    """The auth token and the variable it came from; ``file://<path>`` means the file's contents."""
    token, source, _ = _token(env)
    return token, source


def _token(env: Mapping[str, str],
           variables: tuple[str, ...] = TOKEN_VARIABLES) -> tuple[str, str, str | None]:
    for name in variables:
        raw = env.get(name)
        if not raw:
            continue
        if raw.startswith("file://"):
            path = raw[len("file://"):]
            return read_token_file(path, name), f"{name} (file)", path
        if raw != raw.strip():
            # Such a token could never be sent back in a header (HTTP strips it): refuse now
            # rather than start a daemon nobody can authenticate to.
            raise ConfigError(f"{name} has leading or trailing whitespace; a token cannot, "
                              "since HTTP strips it from header values")
        return raw, name, None
    raise ConfigError(
        "no auth token: set one of " + ", ".join(variables)
        + " (a value of file://<path> reads the token from that file)"
    )


# Settings from the configuration file, and the environment variables that override each.
# (``region`` is the file's over AWS_REGION, as in the Agent: the SDK's own variable is the
# default the file's key exists to change.)
_FILE_FIELDS: dict[str, tuple[str, ...]] = {
    "port": ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",),
    "cache_items": ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE",),
    "max_inbound_connections": ("PARAMETERS_SECRETS_EXTENSION_MAX_INBOUND_CONNECTIONS",),
    "log_level": ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL",),
    "region": (), "path_prefix": (), "max_roles": (), "validate_credentials": (),
    "ignore_transient_errors": (), "token_headers": (), "token_variables": (),
    "prefetch_buffer_ratio": (), "prefetch_jitter_secs": (),
    "log_to_file": (), "credentials_file": (),
}
_TTL_FIELDS = {"ssm_ttl": "SSM_PARAMETER_STORE_TTL", "secrets_ttl": "SECRETS_MANAGER_TTL",
               "s3_ttl": "PARAMETERS_SECRETS_EXTENSION_S3_TTL"}


# The file's key for a value above, where it is not the field's own name (for warnings).
_FILE_KEYS = {"port": "http_port", "cache_items": "cache_size",
              "max_inbound_connections": "max_conn", "log_level": "log_level"}


def default_cache_mb(env: Mapping[str, str]) -> int:
    """The byte bound in MB when none is set: ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` (MB) divided
    by ``LAMBDA_CACHE_DIVISOR`` in Lambda, else ``DEFAULT_CACHE_MB``. A platform value that is
    not a positive whole number is ignored rather than refused."""
    raw = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return max(1, int(raw) // LAMBDA_CACHE_DIVISOR)
    return DEFAULT_CACHE_MB


def _is_set(env: Mapping[str, str], name: str) -> bool:
    return bool(env.get(name, "").strip())


def _conflicts(settings: Settings, env: Mapping[str, str],
               from_file: Mapping[str, object]) -> list[str]:
    """A warning for each file value that a set variable overrides with another value (field
    report N8: a container image's HTTP_PORT silently beat the file's ``http_port``).
    ``settings`` are the environment's, before the file is laid under them."""
    found: list[str] = []
    for field, variables in _FILE_FIELDS.items():
        key = _FILE_KEYS.get(field, field)
        given = [name for name in variables if _is_set(env, name)]
        if given and field in from_file and from_file[field] != getattr(settings, field):
            found.append(f"{given[0]}={getattr(settings, field)} overrides the configuration "
                         f"file's {key} = {from_file[field]}")
    ttl = from_file.get("ttl_from_file")
    for field, variable in _TTL_FIELDS.items():
        name = variable if _is_set(env, variable) else "PARAMETERS_SECRETS_EXTENSION_TTL_SECS"
        if ttl is not None and _is_set(env, name) and getattr(settings, field) != ttl:
            found.append(f"{name}={getattr(settings, field)} overrides the configuration file's "
                         f"ttl_seconds = {ttl}")
    if from_file.get("ignore_transient_errors") is False and settings.stale_if_error_secs \
            and _is_set(env, "PARAMETERS_SECRETS_EXTENSION_STALE_IF_ERROR_SECS"):
        found.append(f"PARAMETERS_SECRETS_EXTENSION_STALE_IF_ERROR_SECS="
                     f"{settings.stale_if_error_secs} overrides the configuration file's "
                     "ignore_transient_errors = false (stale values are served on errors)")
    return list(dict.fromkeys(found))


def _overlay(settings: Settings, env: Mapping[str, str],
             from_file: Mapping[str, object]) -> Settings:
    """The file's values under the environment's: a variable that is set wins."""
    changes: dict[str, Any] = {}
    for field, variables in _FILE_FIELDS.items():
        if field in from_file and not any(_is_set(env, name) for name in variables):
            changes[field] = from_file[field]
    ttl = from_file.get("ttl_from_file")
    if ttl is not None and not _is_set(env, "PARAMETERS_SECRETS_EXTENSION_TTL_SECS"):
        for field, variable in _TTL_FIELDS.items():
            if not _is_set(env, variable):
                changes[field] = ttl
    if from_file.get("ignore_transient_errors") is False \
            and not _is_set(env, "PARAMETERS_SECRETS_EXTENSION_STALE_IF_ERROR_SECS"):
        changes["stale_if_error_secs"] = 0  # an error is answered as an error
    for field in ("prefetch", "prefetch_tags"):  # the environment's list and the file's, both
        extra = from_file.get(field)
        if isinstance(extra, tuple):
            changes[field] = tuple(dict.fromkeys(getattr(settings, field) + extra))
    return settings._replace(**changes)


def _local_file(env: Mapping[str, str]) -> str | None:
    """``PARAMETERS_SECRETS_EXTENSION_LOCAL_FILE`` (``--local FILE``), checked whole now: a bad
    file stops the start with its one line (the file, the entry, what is wrong)."""
    path = env.get(LOCAL_FILE, "").strip()
    if not path:
        return None
    from sidecar.config.local_data import LocalFileError
    from sidecar.config.local_file import load as load_local

    try:
        load_local(path)
    except LocalFileError as exc:
        raise ConfigError(str(exc)) from None
    return path


def load(env: Mapping[str, str] | None = None, config_file: str | None = None
         ) -> tuple[Settings, list[str]]:
    """Build the settings from ``env`` (default: the process environment) and, when given, the
    Secrets Manager Agent's configuration file.

    Returns the settings and the warnings to log once logging is set up.
    """
    env = os.environ if env is None else env
    warnings: list[str] = []
    from_file: dict[str, object] = {}
    if config_file is not None:
        from sidecar.config.agent_file import AgentConfigError, load_file

        try:
            from_file = load_file(config_file)
        except AgentConfigError as exc:
            raise ConfigError(str(exc)) from None
    variables = from_file.get("token_variables", TOKEN_VARIABLES)
    assert isinstance(variables, tuple)
    try:
        listening = listen.load(env, from_file, warnings)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        token, token_source, token_file = _token(env, variables)
    except ConfigError as exc:
        if "bind_address" in listening:  # SPEC 1: never beyond loopback without a token
            raise ConfigError(f"{listen.BIND_ADDRESS}={listening['bind_address']!r} needs an "
                              f"auth token: {exc}") from None
        raise
    initialization_type = env.get("AWS_LAMBDA_INITIALIZATION_TYPE", "").strip().lower()
    wait_choice = _choice(env, "PARAMETERS_SECRETS_EXTENSION_PREFETCH_WAIT", "auto",
                          PREFETCH_WAIT_CHOICES)
    init_mode = _choice(env, "PARAMETERS_SECRETS_EXTENSION_INIT_MODE", "auto", INIT_MODES)
    if wait_choice == "true":  # "hold INIT until prefetch lands" (it predates INIT_MODE)
        if init_mode == "early":
            raise ConfigError("PARAMETERS_SECRETS_EXTENSION_PREFETCH_WAIT='true' contradicts "
                              "PARAMETERS_SECRETS_EXTENSION_INIT_MODE='early': set one of them")
        init_mode = "wait"
    shared_ttl = env.get("PARAMETERS_SECRETS_EXTENSION_TTL_SECS")
    prefetch_raw = env.get("PARAMETERS_SECRETS_EXTENSION_PREFETCH", "")
    prefetch: tuple[Key, ...] = ()
    prefetch_tags: tuple[tuple[str, str | None], ...] = ()
    if prefetch_raw.strip():
        from sidecar.config.prefetch import PrefetchSyntaxError, parse_prefetch

        try:
            prefetch, prefetch_tags = parse_prefetch(prefetch_raw)
        except PrefetchSyntaxError as exc:
            raise ConfigError(f"PARAMETERS_SECRETS_EXTENSION_PREFETCH is invalid: {exc}") from None
    settings = Settings(
        token=token,
        token_source=token_source,
        port=_int(env, "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", 2773, 1, 65535),
        cache_enabled=_bool(env, "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED", True),
        cache_items=_int(env, "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", 1000, 0, MAX_CACHE_ITEMS),
        cache_bytes=_int(env, "PARAMETERS_SECRETS_EXTENSION_MAX_CACHE_SIZE",
                         default_cache_mb(env), 1, MAX_CACHE_MB) * 1024 * 1024,
        max_connections=_int(
            env, "PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", 3, 1, MAX_CONNECTIONS
        ),
        log_level=_log_level(env),
        log_format=_choice(env, "AWS_LAMBDA_LOG_FORMAT", "text", LOG_FORMATS),
        ssm_ttl=_ttl(env, "SSM_PARAMETER_STORE_TTL", shared_ttl, warnings),
        secrets_ttl=_ttl(env, "SECRETS_MANAGER_TTL", shared_ttl, warnings),
        ssm_timeout_ms=_int(env, "SSM_PARAMETER_STORE_TIMEOUT_MILLIS", 0, 0, MAX_TIMEOUT_MILLIS),
        secrets_timeout_ms=_int(env, "SECRETS_MANAGER_TIMEOUT_MILLIS", 0, 0, MAX_TIMEOUT_MILLIS),
        refresh_ahead=_fraction(env, "PARAMETERS_SECRETS_EXTENSION_REFRESH_AHEAD", 0.8),
        stale_if_error_secs=_int(
            env, "PARAMETERS_SECRETS_EXTENSION_STALE_IF_ERROR_SECS",
            DEFAULT_STALE_IF_ERROR_SECS, 0, MAX_STALE_IF_ERROR_SECS,
        ),
        coalesce=_bool(env, "PARAMETERS_SECRETS_EXTENSION_COALESCE", True),
        prefetch=prefetch,
        region=(env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None),
        token_file=token_file,
        max_inbound_connections=_int(
            env, "PARAMETERS_SECRETS_EXTENSION_MAX_INBOUND_CONNECTIONS",
            DEFAULT_INBOUND_CONNECTIONS, 1, MAX_INBOUND_CONNECTIONS,
        ),
        shutdown_grace_secs=_int(env, "PARAMETERS_SECRETS_EXTENSION_SHUTDOWN_GRACE_SECS",
                                 DEFAULT_SHUTDOWN_GRACE_SECS, 0, MAX_SHUTDOWN_GRACE_SECS),
        initialization_type=initialization_type,
        prefetch_wait=wait_choice != "false",
        init_mode=init_mode,
        prefetch_wait_ms=_int(env, "PARAMETERS_SECRETS_EXTENSION_PREFETCH_WAIT_MILLIS",
                              DEFAULT_PREFETCH_WAIT_MILLIS, 0, MAX_PREFETCH_WAIT_MILLIS),
        s3_ttl=_ttl(env, "PARAMETERS_SECRETS_EXTENSION_S3_TTL", shared_ttl, warnings),
        s3_timeout_ms=_int(env, "PARAMETERS_SECRETS_EXTENSION_S3_TIMEOUT_MILLIS", 0, 0,
                           MAX_TIMEOUT_MILLIS),
        s3_max_object_bytes=_int(env, "PARAMETERS_SECRETS_EXTENSION_S3_MAX_OBJECT_BYTES",
                                 DEFAULT_S3_MAX_OBJECT_BYTES, 1, MAX_S3_MAX_OBJECT_BYTES),
        metrics_emf=_bool(env, "PARAMETERS_SECRETS_EXTENSION_METRICS_EMF", False),
        metrics_namespace=_namespace(env),
        config_file=config_file,
        prefetch_tags=prefetch_tags,
        local_file=_local_file(env),
        **listening,
    )
    if from_file:
        warnings.extend(_conflicts(settings, env, from_file))
        settings = _overlay(settings, env, from_file)
    try:  # after the file: the two listeners' ports must differ, whichever set the main one
        settings = settings._replace(appconfig=appconfig.load(env, settings.port, warnings))
    except appconfig.AppConfigSettingError as exc:
        raise ConfigError(str(exc)) from None
    return settings, warnings
