"""The auth token (SPEC section 3): the first set of ``AWS_TOKEN``, ``AWS_SESSION_TOKEN``,
``AWS_CONTAINER_AUTHORIZATION_TOKEN``; a ``file://<path>`` value means the file's contents."""

from __future__ import annotations

from collections.abc import Mapping

from sidecar.config.model import MAX_TOKEN_FILE_BYTES, TOKEN_VARIABLES
from sidecar.config.values import ConfigError


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
