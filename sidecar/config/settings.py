"""Settings from the environment: one frozen object, every validation message in one place.

Names, defaults and meanings follow the AWS Parameters and Secrets Lambda Extension (SPEC section
5). A bad value raises ``ConfigError`` whose text is the one line the user sees: the variable, the
value and what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from sidecar.config import appconfig, listen

# Standard library only, and little of it: Lambda mode loads this before the register call,
# and every millisecond here is added to the function's cold start. (No dataclasses, pathlib
# or the query parser unless a prefetch list is set.)
# The shape, the validators and the token live beside this module (model, values, tokens);
# what they define is re-exported here, where the rest of the daemon looks for it.
from sidecar.config.model import (
    DEFAULT_CACHE_MB,
    DEFAULT_INBOUND_CONNECTIONS,
    DEFAULT_PATH_PREFIX,
    DEFAULT_PREFETCH_WAIT_MILLIS,
    DEFAULT_S3_MAX_OBJECT_BYTES,
    DEFAULT_SHUTDOWN_GRACE_SECS,
    DEFAULT_STALE_IF_ERROR_SECS,
    INIT_MODES,
    LAMBDA_CACHE_DIVISOR,
    LOCAL_FILE,
    LOG_FORMATS,
    MAX_CACHE_ITEMS,
    MAX_CACHE_MB,
    MAX_CONNECTIONS,
    MAX_INBOUND_CONNECTIONS,
    MAX_PREFETCH_WAIT_MILLIS,
    MAX_S3_MAX_OBJECT_BYTES,
    MAX_SHUTDOWN_GRACE_SECS,
    MAX_STALE_IF_ERROR_SECS,
    MAX_TIMEOUT_MILLIS,
    PREFETCH_WAIT_CHOICES,
    TOKEN_HEADERS,
    TOKEN_VARIABLES,
    Settings,
)
from sidecar.config.tokens import _token, read_token, read_token_file
from sidecar.config.values import (
    ConfigError,
    _bool,
    _choice,
    _fraction,
    _int,
    _log_level,
    _namespace,
    _ttl,
)
from sidecar.core.key import Key

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing before the register call
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DEFAULT_INBOUND_CONNECTIONS",
    "DEFAULT_PATH_PREFIX",
    "DEFAULT_STALE_IF_ERROR_SECS",
    "LOCAL_FILE",
    "TOKEN_HEADERS",
    "TOKEN_VARIABLES",
    "ConfigError",
    "Settings",
    "load",
    "read_token",
    "read_token_file",
]


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
