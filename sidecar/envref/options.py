"""The settings the exec wrapper and ``exec`` read from the environment (README,
Configuration). Standard library only. A bad value is a ``ValueError`` whose text is the one
line to show: the variable, the value and what is allowed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.envref.client import TIMEOUT_VARIABLE, Endpoint, default_endpoint, parse_endpoint

ON_ERROR = "PARAMETERS_SECRETS_EXTENSION_ENV_ON_ERROR"
TIMEOUT = TIMEOUT_VARIABLE
ENDPOINT = "PARAMETERS_SECRETS_SIDECAR_ENDPOINT"  # as the Python client reads it
FAIL, UNSET = "fail", "unset"
ON_ERROR_CHOICES = (FAIL, UNSET)
DEFAULT_TIMEOUT_MS = 8000  # below Lambda's 10 s INIT limit, with room for the runtime's own
MAX_TIMEOUT_MS = 600_000

if TYPE_CHECKING:
    from collections.abc import Mapping


class Options:
    __slots__ = ("endpoint", "on_error", "timeout_ms")

    def __init__(self, on_error: str = FAIL, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 endpoint: Endpoint | None = None) -> None:
        self.on_error, self.timeout_ms = on_error, timeout_ms
        self.endpoint = Endpoint() if endpoint is None else endpoint

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Options) and (self.on_error, self.timeout_ms, self.endpoint) \
            == (other.on_error, other.timeout_ms, other.endpoint)


def _shown(value: str) -> str:
    return repr(value[:64])


def on_error(value: str, source: str = ON_ERROR) -> str:
    choice = value.strip().lower()
    if choice not in ON_ERROR_CHOICES:
        raise ValueError(f"{source}={_shown(value)} is invalid: expected "
                         + " or ".join(ON_ERROR_CHOICES))
    return choice


def endpoint(value: str, source: str = ENDPOINT) -> Endpoint:
    try:
        return parse_endpoint(value)
    except ValueError as exc:
        raise ValueError(f"{source}={_shown(value)} is invalid: expected {exc}") from None


def load(env: Mapping[str, str]) -> Options:
    """The options in ``env``; unset or empty variables take their defaults."""
    chosen = Options(endpoint=default_endpoint(env))
    raw_choice = env.get(ON_ERROR, "").strip()
    raw_timeout = env.get(TIMEOUT, "").strip()
    raw_endpoint = env.get(ENDPOINT, "").strip()
    timeout_ms = chosen.timeout_ms
    if raw_timeout:
        if not (raw_timeout.isascii() and raw_timeout.isdigit()) \
                or not 1 <= int(raw_timeout) <= MAX_TIMEOUT_MS:
            raise ValueError(f"{TIMEOUT}={_shown(raw_timeout)} is invalid: expected a whole "
                             f"number of milliseconds from 1 to {MAX_TIMEOUT_MS}")
        timeout_ms = int(raw_timeout)
    return Options(on_error=on_error(raw_choice) if raw_choice else FAIL, timeout_ms=timeout_ms,
                   endpoint=endpoint(raw_endpoint) if raw_endpoint else chosen.endpoint)
