"""The settings' shape: one frozen object and the names, defaults and bounds of its values
(SPEC section 5; the AWS Parameters and Secrets Lambda Extension's names and defaults).
``settings.load`` fills it from the environment and the Agent's file."""

from __future__ import annotations

from sidecar.config import listen
from sidecar.config.appconfig import AppConfigSettings
from sidecar.core.key import Key
from sidecar.core.record import Record

# Standard library only, and little of it: Lambda mode loads this before the register call,
# and every millisecond here is added to the function's cold start.

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


class Settings(Record):
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
