"""The Secrets Manager Agent's TOML configuration file (``--config FILE``).

Both of the Agent's layouts are read: the flat keys of its first releases (``http_port = 2773``
at the top) and the nested sections of the Workload Credentials Provider (``[logging]``,
``[capabilities.secrets_manager]`` with ``.cache``, ``.security`` and ``.prefetch``). As in the
Agent, the two may not be mixed, unknown keys are refused, and numbers may be TOML integers or
strings. The result is a mapping of ``Settings`` field names to values; ``config.load`` lays it
under the environment (see the README for the precedence). Every error is one line naming the
key, the value and what is allowed.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from typing import Any

from sidecar.config import listen
from sidecar.core.key import SECRETS, Key
from sidecar.core.query import ROLE_ARN

MAX_FILE_BYTES = 1024 * 1024
MAX_PREFETCH_ENTRIES = 1000
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
_LOG_LEVELS = ("debug", "info", "warn", "error", "none")
_REGION = re.compile(r"[a-z]{2,}(-[a-z0-9]+)+")  # us-east-1, eu-isoe-west-1, cn-north-1

Values = dict[str, Any]


class AgentConfigError(ValueError):
    """``str(error)`` is the one line shown to the user."""


def _invalid(key: str, value: object, allowed: str) -> AgentConfigError:
    shown = repr(value) if not isinstance(value, str) else repr(value[:200])
    return AgentConfigError(f"{key} = {shown} is invalid: expected {allowed}")


def _number(key: str, value: object, low: int, high: int) -> int:
    """A whole number given as a TOML integer or a string of digits (the Agent takes both)."""
    allowed = f"a whole number from {low} to {high} (an integer or a string of digits)"
    if isinstance(value, bool):
        raise _invalid(key, value, allowed)
    if isinstance(value, str):
        if not value.strip().isascii() or not value.strip().isdigit():
            raise _invalid(key, value, allowed)
        number = int(value.strip())
    elif isinstance(value, int):
        number = value
    else:
        raise _invalid(key, value, allowed)
    if not low <= number <= high:
        raise _invalid(key, value, allowed)
    return number


def _ratio(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 1.0:
        raise _invalid(key, value, "a number from 0.1 to 1.0")
    return float(value)


def _flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _invalid(key, value, "true or false (a TOML boolean)")
    return value


def _text(key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(key, value, "a non-empty string")
    return value


def _names(key: str, value: object, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _invalid(key, value, f"a non-empty list of {what}")
    for item in value:
        if not isinstance(item, str) or not pattern.fullmatch(item):
            raise _invalid(key, value, f"a non-empty list of {what}")
    return tuple(dict.fromkeys(value))


def _role(key: str, value: object) -> str:
    if not isinstance(value, str) or not ROLE_ARN.fullmatch(value):
        raise _invalid(key, value, "a role ARN: arn:<partition>:iam::<12-digit account>:"
                                   "role/<name>")
    return value


def _table(key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(key, value, "a table")
    return value


def _prefetch(prefix: str, table: object, out: Values) -> None:
    found = _table(prefix, table)
    keys: list[Key] = []
    tags: list[tuple[str, str | None]] = []
    for name, value in found.items():
        key = f"{prefix}.{name}"
        if name == "cache_buffer_ratio":
            out["prefetch_buffer_ratio"] = _ratio(key, value)
        elif name == "max_jitter_seconds":
            out["prefetch_jitter_secs"] = _number(key, value, 0, 10)
        elif name in ("secrets", "filter_tags"):
            if not isinstance(value, list) or len(value) > MAX_PREFETCH_ENTRIES:
                raise _invalid(key, value, f"a list of at most {MAX_PREFETCH_ENTRIES} tables")
            field = "secret_id" if name == "secrets" else "key"
            for position, entry in enumerate(value, start=1):
                where = f"{key}[{position}]"
                entry = _table(where, entry)
                unknown = set(entry) - {field, "role_arn"}
                if unknown:
                    raise AgentConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} "
                                           f"(expected {field} and optionally role_arn)")
                if field not in entry:
                    raise AgentConfigError(f"{where}: {field} is required")
                target = _text(f"{where}.{field}", entry[field])
                if len(target) > 2048:
                    raise _invalid(f"{where}.{field}", target, "at most 2048 characters")
                role = _role(f"{where}.role_arn", entry["role_arn"]) \
                    if "role_arn" in entry else None
                if name == "secrets":
                    keys.append(Key(SECRETS, target, role=role))
                else:
                    tags.append((target, role))
        else:
            raise AgentConfigError(f"unknown key {key!r} in the configuration file")
    out["prefetch"] = tuple(dict.fromkeys(keys))
    out["prefetch_tags"] = tuple(dict.fromkeys(tags))


# Each key: where its value goes (a ``Settings`` field, or a function filling several).
Rule = Callable[[str, object, Values], None]


def _into(field: str, parse: Callable[[str, object], object]) -> Rule:
    def apply(key: str, value: object, out: Values) -> None:
        out[field] = parse(key, value)
    return apply


def _log_level(key: str, value: object) -> str:
    if not isinstance(value, str) or value.lower() not in _LOG_LEVELS:
        raise _invalid(key, value, "DEBUG, INFO, WARN, ERROR or NONE (any case)")
    return value.lower()


def _enabled(key: str, value: object, out: Values) -> None:
    if not _flag(key, value):
        raise AgentConfigError(f"{key} = false turns off the only capability this daemon has; "
                               "remove the key or set it to true")


def _region(key: str, value: object) -> str:
    if not isinstance(value, str) or len(value) > 64 or not _REGION.fullmatch(value):
        raise _invalid(key, value, "an AWS region name such as us-east-1")
    return value


def _prefix(key: str, value: object) -> str:
    text = _text(key, value)
    if not text.startswith("/") or len(text) > 256 or any(c in text for c in "?#% "):
        raise _invalid(key, value, "a path starting with / (no ?, #, % or spaces)")
    return text if text.endswith("/") else text + "/"


def _listen_rule(check: Callable[[Any], object], allowed: str | None = None
                 ) -> Callable[[str, object], object]:
    """A ``config.listen`` check, its ``ValueError`` turned into this file's error line."""
    def parse(key: str, value: object) -> object:
        try:
            return check(value)
        except ValueError as exc:
            raise _invalid(key, value, allowed or str(exc)) from None
    return parse


SERVICE_RULES: dict[str, Rule] = {
    "http_port": _into("port", lambda k, v: _number(k, v, 1, 65535)),
    "region": _into("region", _region),
    "path_prefix": _into("path_prefix", _prefix),
    "max_conn": _into("max_inbound_connections", lambda k, v: _number(k, v, 1, 10_000)),
    "max_roles": _into("max_roles", lambda k, v: _number(k, v, 1, 20)),
    "ignore_transient_errors": _into("ignore_transient_errors", _flag),
    "validate_credentials": _into("validate_credentials", _flag),
    "credentials_file_path": _into("credentials_file", _text),
    # Not the Agent's: the Unix domain socket (README, "Where it listens").
    "unix_socket": _into("unix_socket", _listen_rule(
        lambda v: listen.unix_path(v if isinstance(v, str) else ""))),
    "unix_socket_mode": _into("unix_socket_mode", _listen_rule(
        listen.file_mode, 'an octal mode from 0000 to 0777: a string such as "0660", or '
                          "TOML's 0o660")),
    "unix_socket_group": _into("unix_socket_group", _listen_rule(listen.group_id)),
}
CACHE_RULES: dict[str, Rule] = {
    # Every cache's TTL; config.load lets each service's own variable override it.
    "ttl_seconds": _into("ttl_from_file", lambda k, v: _number(k, v, 0, 86400)),
    "cache_size": _into("cache_items", lambda k, v: _number(k, v, 1, 100_000)),
}
SECURITY_RULES: dict[str, Rule] = {
    "ssrf_headers": _into("token_headers",
                          lambda k, v: _names(k, v, _HEADER, "header names")),
    "ssrf_env_variables": _into("token_variables",
                                lambda k, v: _names(k, v, _VARIABLE, "variable names")),
}
LOGGING_RULES: dict[str, Rule] = {
    "log_level": _into("log_level", _log_level),
    "log_to_file": _into("log_to_file", _flag),
}
FLAT_RULES: dict[str, Rule] = {**SERVICE_RULES, **CACHE_RULES, **SECURITY_RULES,
                               **LOGGING_RULES}
NESTED_SECTIONS = ("logging", "capabilities")


def _apply(prefix: str, table: dict[str, Any], rules: dict[str, Rule], out: Values,
           sections: dict[str, Callable[[str, object, Values], None]]) -> None:
    for name, value in table.items():
        key = f"{prefix}{name}"
        if name in rules:
            rules[name](key, value, out)
        elif name in sections:
            sections[name](key, value, out)
        else:
            raise AgentConfigError(f"unknown key {key!r} in the configuration file")


def _section(rules: dict[str, Rule]) -> Callable[[str, object, Values], None]:
    def apply(key: str, value: object, out: Values) -> None:
        _apply(key + ".", _table(key, value), rules, out, {})
    return apply


def _secrets_manager(key: str, value: object, out: Values) -> None:
    _apply(key + ".", _table(key, value), {**SERVICE_RULES, "enabled": _enabled}, out, {
        "cache": _section(CACHE_RULES),
        "security": _section(SECURITY_RULES),
        "prefetch": _prefetch,
    })


def _capabilities(key: str, value: object, out: Values) -> None:
    table = _table(key, value)
    for name, inner in table.items():
        if name == "secrets_manager":
            _secrets_manager(f"{key}.{name}", inner, out)
        elif name == "acm":
            raise AgentConfigError(f"{key}.acm: certificate export is not supported by this "
                                   "daemon (it serves over HTTP only); remove the section")
        else:
            raise AgentConfigError(f"unknown key '{key}.{name}' in the configuration file")


def parse(text: str) -> Values:
    """The file's text as ``Settings`` field values; raises ``AgentConfigError``."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AgentConfigError(f"not valid TOML: {exc}") from None
    out: Values = {"validate_credentials": True}  # the Agent's default, unlike ours
    nested = any(name in document for name in NESTED_SECTIONS)
    if nested:
        flat = [name for name in document if name not in NESTED_SECTIONS]
        if flat:
            raise AgentConfigError(
                f"{flat[0]!r}: flat keys cannot be mixed with the [logging] and [capabilities] "
                "sections; move it under [capabilities.secrets_manager] (or [logging])")
        _apply("", document, {}, out, {"logging": _section(LOGGING_RULES),
                                       "capabilities": _capabilities})
    else:
        _apply("", document, FLAT_RULES, out, {"prefetch": _prefetch})
    return out


def load_file(path: str) -> Values:
    """Read and parse ``path``; every failure is one ``AgentConfigError`` line."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise AgentConfigError(f"cannot read the configuration file {path!r}: "
                               f"{exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise AgentConfigError(f"the configuration file {path!r} is larger than 1 MB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AgentConfigError(f"the configuration file {path!r} is not UTF-8") from None
    try:
        return parse(text)
    except AgentConfigError as exc:
        raise AgentConfigError(f"{path}: {exc}") from None
