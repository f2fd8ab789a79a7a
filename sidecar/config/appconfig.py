"""The AppConfig listener's settings: the AWS AppConfig Agent's ``AWS_APPCONFIG_EXTENSION_*``
variables (their names and defaults are the AWS agent's Lambda extension's, README "AppConfig
(port 2772)") and ``PARAMETERS_SECRETS_EXTENSION_APPCONFIG``.

Standard library only, and little of it: Lambda mode loads this before the register call.
Every bad value raises ``AppConfigSettingError`` whose text is the one line shown (variable,
value, what is allowed); ``settings.load`` turns it into its ``ConfigError``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from sidecar.core.record import Record

DEFAULT_PORT = 2772
DEFAULT_POLL_INTERVAL_SECS = 45
MAX_POLL_INTERVAL_SECS = 86400  # the Data API's bound on RequiredMinimumPollIntervalInSeconds
DEFAULT_POLL_TIMEOUT_MS = 3000
DEFAULT_MAX_CONNECTIONS = 3
MAX_PREFETCH = 100
MODES = ("auto", "true", "false")
MODE_VARIABLE = "PARAMETERS_SECRETS_EXTENSION_APPCONFIG"
PORT_VARIABLE = "AWS_APPCONFIG_EXTENSION_HTTP_PORT"
PREFETCH_VARIABLE = "AWS_APPCONFIG_EXTENSION_PREFETCH_LIST"
# The AWS agent's Lambda extension registers under this file name; where it is attached, it
# owns the port and this daemon leaves it alone.
AWS_AGENT_EXTENSION = "/opt/extensions/AppConfigAgent"
# The AWS agent's variables this daemon does not implement: named in a warning when set.
UNSUPPORTED = tuple(f"AWS_APPCONFIG_EXTENSION_{name}" for name in (
    "ROLE_EXTERNAL_ID", "ROLE_SESSION_NAME", "PROXY_URL", "PROXY_HEADERS", "MANIFEST",
    "SERVICE_ENDPOINT"))
_SEGMENTS = ("applications", "environments", "configurations")
LOG_LEVELS = ("debug", "info", "warn", "error", "none")  # as the daemon's own log level
MAX_CONNECTIONS = 1000
MAX_TIMEOUT_MILLIS = 600_000


class AppConfigSettingError(Exception):
    """A bad AppConfig variable; ``str(error)`` is the one line shown."""


def _invalid(name: str, value: str, allowed: str) -> AppConfigSettingError:
    # The same words as settings' own messages: one format for every variable.
    return AppConfigSettingError(f"{name}={value!r} is invalid: expected {allowed}")


def whole(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    allowed = f"a whole number from {low} to {high}"
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(name, raw, allowed) from None
    if not low <= value <= high:
        raise _invalid(name, raw, allowed)
    return value


def choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    lowered = "warn" if raw.lower() == "warning" else raw.lower()
    if lowered not in choices:
        raise _invalid(name, raw, "one of " + ", ".join(choices))
    return lowered


class ConfigId(Record):
    """One configuration: application, environment and profile, each a name or an id."""

    application: str
    environment: str
    profile: str

    def describe(self) -> str:
        """The AWS agent's own label for it in log lines (never a value)."""
        return f"{self.application}:{self.environment}:{self.profile}"


class AppConfigSettings(Record):
    wanted: bool = False  # serve the listener
    required: bool = False  # a port that cannot be bound stops the start (else: one warning)
    port: int = DEFAULT_PORT
    poll_interval_secs: int = DEFAULT_POLL_INTERVAL_SECS
    poll_timeout_ms: int = DEFAULT_POLL_TIMEOUT_MS
    prefetch: tuple[ConfigId, ...] = ()
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    log_level: str | None = None  # None: the daemon's level
    role: str | None = None
    region: str | None = None

    def describe(self) -> dict[str, object]:
        """For the start-up log line (names and numbers only)."""
        if not self.wanted:
            return {"appconfig": "off"}
        return {"appconfig_port": self.port, "appconfig_poll_secs": self.poll_interval_secs,
                "appconfig_poll_timeout_ms": self.poll_timeout_ms,
                "appconfig_prefetch_items": len(self.prefetch)}


def parse_path(raw: str) -> ConfigId | None:
    """``/applications/A/environments/E/configurations/P`` (each percent-decoded), or None."""
    parts = raw.split("/")
    if len(parts) != 7 or parts[0] or tuple(parts[1:7:2]) != _SEGMENTS:
        return None
    from urllib.parse import unquote

    names = [unquote(part) for part in parts[2:7:2]]
    if not all(0 < len(name) <= 128 for name in names):  # the Data API's Identifier bounds
        return None
    return ConfigId(*names)


def _prefetch(env: Mapping[str, str]) -> tuple[ConfigId, ...]:
    raw = env.get(PREFETCH_VARIABLE, "").strip()
    if not raw:
        return ()
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if len(items) > MAX_PREFETCH:
        raise AppConfigSettingError(f"{PREFETCH_VARIABLE} lists {len(items)} configurations: "
                                    f"at most {MAX_PREFETCH}")
    found: list[ConfigId] = []
    for item in items:
        parsed = parse_path(item)
        if parsed is None:
            raise AppConfigSettingError(
                f"{PREFETCH_VARIABLE} item {item[:200]!r} is invalid: expected "
                "/applications/<application>/environments/<environment>/configurations/<profile>")
        found.append(parsed)
    return tuple(dict.fromkeys(found))


def _role(env: Mapping[str, str]) -> str | None:
    name = "AWS_APPCONFIG_EXTENSION_ROLE_ARN"
    raw = env.get(name, "").strip()
    if not raw:
        return None
    from sidecar.core.query import ROLE_ARN

    if not ROLE_ARN.fullmatch(raw):
        raise _invalid(name, raw[:300], "an IAM role ARN (arn:aws:iam::123456789012:role/name)")
    return raw


def _region(env: Mapping[str, str]) -> str | None:
    name = "AWS_APPCONFIG_EXTENSION_SERVICE_REGION"
    raw = env.get(name, "").strip()
    if not raw:
        return None
    words = raw.split("-")
    if len(words) < 3 or not words[-1].isdigit() or not all(
            word.isalpha() and word.islower() for word in words[:-1]):
        raise _invalid(name, raw[:64], "a region name (us-east-1)")
    return raw


def load(env: Mapping[str, str], main_port: int, warnings: list[str]) -> AppConfigSettings:
    """The AppConfig settings from ``env``; raises ``AppConfigSettingError``. ``main_port`` is
    the main listener's (the two must differ); notes for the log go to ``warnings``."""
    mode = choice(env, MODE_VARIABLE, "auto", MODES)
    port_set = bool(env.get(PORT_VARIABLE, "").strip())
    lambda_mode = bool(env.get("AWS_LAMBDA_RUNTIME_API"))
    if mode == "false":
        return AppConfigSettings()
    if mode == "auto" and not (lambda_mode or port_set):
        return AppConfigSettings()  # standalone, container, service: opt-in
    if mode == "auto" and lambda_mode and os.path.exists(AWS_AGENT_EXTENSION):
        warnings.append("the AWS AppConfig Agent extension is attached: it serves AppConfig; "
                        f"this daemon does not ({MODE_VARIABLE}=true to serve it here instead)")
        return AppConfigSettings()
    port = whole(env, PORT_VARIABLE, DEFAULT_PORT, 1, 65535)
    if port == main_port:
        raise _invalid(PORT_VARIABLE, str(port), "a port other than the main listener's "
                       "(PARAMETERS_SECRETS_EXTENSION_HTTP_PORT)")
    warnings.extend(f"{name} is set but not supported; ignored"
                    for name in UNSUPPORTED if env.get(name, "").strip())
    return AppConfigSettings(
        wanted=True,
        # Asked for explicitly: a port that cannot be bound is a failed start, not a note.
        required=mode == "true" or not lambda_mode,
        port=port,
        poll_interval_secs=whole(env, "AWS_APPCONFIG_EXTENSION_POLL_INTERVAL_SECONDS",
                                 DEFAULT_POLL_INTERVAL_SECS, 1, MAX_POLL_INTERVAL_SECS),
        poll_timeout_ms=whole(env, "AWS_APPCONFIG_EXTENSION_POLL_TIMEOUT_MILLIS",
                              DEFAULT_POLL_TIMEOUT_MS, 1, MAX_TIMEOUT_MILLIS),
        prefetch=_prefetch(env),
        max_connections=whole(env, "AWS_APPCONFIG_EXTENSION_MAX_CONNECTIONS",
                              DEFAULT_MAX_CONNECTIONS, 1, MAX_CONNECTIONS),
        log_level=choice(env, "AWS_APPCONFIG_EXTENSION_LOG_LEVEL", "", LOG_LEVELS) or None,
        role=_role(env),
        region=_region(env),
    )
