"""pydantic-settings sources that read through the daemon (``pip install
'parameters-secrets-sidecar-client[pydantic]'``).

Drop-ins for pydantic-settings' own ``AWSSystemsManagerSettingsSource`` and
``AWSSecretsManagerSettingsSource``, with the same arguments and the same mapping of names to
fields (the path prefix removed, ``/`` as the nested delimiter for parameters, ``--`` for a
secret's JSON keys). Theirs call AWS on every ``Settings()``; these ask the daemon, so
``Settings()`` in a handler costs microseconds and picks up rotations after the daemon's TTL
(or ``max_age``). Declare SecureString fields as ``SecretStr`` so they never print.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic_settings import BaseSettings, EnvSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

from sidecar_client.parameters import get_secret, transport


class SidecarParameterStoreSource(EnvSettingsSource):
    """Every parameter under ``ssm_path`` (recursive, decrypted), one field per name."""

    def __init__(self, settings_cls: type[BaseSettings], ssm_path: str = "/",
                 case_sensitive: bool | None = True, env_prefix: str | None = None,
                 env_nested_delimiter: str | None = "/", env_parse_none_str: str | None = None,
                 env_parse_enums: bool | None = None, max_age: int | None = None) -> None:
        if not ssm_path.startswith("/"):
            raise ValueError(f"the parameter path must start with '/': {ssm_path!r}")
        self._ssm_path = ssm_path
        self._max_age = max_age
        super().__init__(settings_cls, case_sensitive=case_sensitive, env_prefix=env_prefix,
                         env_nested_delimiter=env_nested_delimiter, env_ignore_empty=False,
                         env_parse_none_str=env_parse_none_str, env_parse_enums=env_parse_enums)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        prefix = self._ssm_path.rstrip("/") + "/"
        query = [("path", self._ssm_path), ("recursive", "true"), ("withDecryption", "true")]
        if self._max_age is not None:
            query.append(("maxAge", str(self._max_age)))
        found = transport().read("/systemsmanager/parameters/path", query).json()["Parameters"]
        values: dict[str, str | None] = {}
        for parameter in found:
            name = str(parameter["Name"])
            values[name[len(prefix):] if name.startswith(prefix) else name] = \
                parameter.get("Value")
        return parse_env_vars(values, self.case_sensitive, self.env_ignore_empty,
                              self.env_parse_none_str)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ssm_path={self._ssm_path!r})"


class SidecarSecretsManagerSource(EnvSettingsSource):
    """One JSON secret, one field per key."""

    def __init__(self, settings_cls: type[BaseSettings], secret_id: str,
                 case_sensitive: bool | None = True, env_prefix: str | None = None,
                 env_nested_delimiter: str | None = "--", env_parse_none_str: str | None = None,
                 env_parse_enums: bool | None = None, max_age: int | None = None) -> None:
        self._secret_id = secret_id
        self._max_age = max_age
        super().__init__(settings_cls, case_sensitive=case_sensitive, env_prefix=env_prefix,
                         env_nested_delimiter=env_nested_delimiter, env_ignore_empty=False,
                         env_parse_none_str=env_parse_none_str, env_parse_enums=env_parse_enums)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        secret: Any = get_secret(self._secret_id, max_age=self._max_age)
        values = json.loads(secret)
        return parse_env_vars(values, self.case_sensitive, self.env_ignore_empty,
                              self.env_parse_none_str)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(secret_id={self._secret_id!r})"
