"""Reading one environment value: the validators, each failing with the one line the user
sees (the variable, the value and what is allowed)."""

from __future__ import annotations

from collections.abc import Mapping

from sidecar.config.model import DEFAULT_METRICS_NAMESPACE, LOG_LEVELS, MAX_TTL_SECS

# Standard library only, and little of it: Lambda mode loads this before the register call,
# and every millisecond here is added to the function's cold start.

class ConfigError(Exception):
    """A configuration problem; ``str(error)`` is the single line shown to the user."""


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
