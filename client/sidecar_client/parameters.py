"""Functions shaped like Powertools' ``parameters`` utility, answered by the daemon.

Nothing is cached in this process: the daemon's cache is shared by every process and language
beside it, refreshes busy keys ahead of expiry and serves stale values through AWS outages, so
a second in-process cache would only add staleness. ``max_age`` and ``force_fetch`` are passed
to the daemon (``maxAge``, ``refreshNow``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any, Union

from sidecar_client._transport import Response, Transport
from sidecar_client.errors import GetParameterError, TransformParameterError

Value = Union[str, bytes, dict, list, None]  # type: ignore[type-arg]
TRANSFORMS = ("json", "binary", "auto")

_default = Transport()


def transport() -> Transport:
    """The module's shared transport (one keep-alive connection per thread)."""
    return _default


def _decrypt(decrypt: bool | None) -> bool:
    if decrypt is not None:
        return decrypt
    return os.environ.get("POWERTOOLS_PARAMETERS_SSM_DECRYPT", "false").lower() == "true"


def _options(force_fetch: bool, max_age: int | None,
             role_arn: str | None = None) -> list[tuple[str, str]]:
    query: list[tuple[str, str]] = []
    if force_fetch:
        query.append(("refreshNow", "true"))
    if max_age is not None:
        query.append(("maxAge", str(max(0, int(max_age)))))
    if role_arn is not None:
        query.append(("roleArn", role_arn))  # read as that IAM role (STS AssumeRole)
    return query


def _check(transform: str | None) -> None:
    if transform is not None and transform not in TRANSFORMS:
        raise TransformParameterError(f"unknown transform {transform!r}: use one of "
                                      + ", ".join(TRANSFORMS), "TransformFailed", 400)


def _transformed(response: Response) -> Value:
    kind = response.headers.get("content-type", "")
    if kind.startswith("application/json"):
        value: Value = response.json()
        return value
    if kind.startswith("application/octet-stream"):
        return response.body
    return response.body.decode("utf-8")


def transform_value(name: str, value: str | None, transform: str | None,
                    raise_on_error: bool = True) -> Value:
    """Powertools' transform rules, for members of group reads."""
    how = transform
    if how == "auto":
        how = "json" if name.endswith(".json") else "binary" if name.endswith(".binary") else None
    if how is None or value is None:
        return value
    try:
        if how == "json":
            parsed: Value = json.loads(value)
            return parsed
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        if raise_on_error:
            raise TransformParameterError(f"the value of {name!r} does not transform with "
                                          f"{how!r}", "TransformFailed", 400) from None
        return None


def get_parameter(name: str, transform: str | None = None, decrypt: bool | None = None,
                  force_fetch: bool = False, max_age: int | None = None,
                  role_arn: str | None = None, **sdk_options: Any) -> Value:
    """One parameter's value (``transform``: ``json``, ``binary`` or ``auto``; ``role_arn``:
    read as that IAM role)."""
    _check(transform)
    query = [("name", name), ("withDecryption", str(_decrypt(decrypt)).lower()),
             *_options(force_fetch, max_age, role_arn)]
    if transform is not None:
        query.append(("transform", transform))
        return _transformed(_default.read("/systemsmanager/parameters/get", query))
    value: str = _default.read("/systemsmanager/parameters/get", query).json()["Parameter"]["Value"]
    return value


def get_parameters(path: str, transform: str | None = None, recursive: bool = True,
                   decrypt: bool | None = None, force_fetch: bool = False,
                   max_age: int | None = None, raise_on_transform_error: bool = False,
                   role_arn: str | None = None, **sdk_options: Any) -> dict[str, Value]:
    """Every parameter under ``path``, keyed by its name after the path (as Powertools)."""
    _check(transform)
    query = [("path", path), ("recursive", str(recursive).lower()),
             ("withDecryption", str(_decrypt(decrypt)).lower()),
             *_options(force_fetch, max_age, role_arn)]
    found = _default.read("/systemsmanager/parameters/path", query).json()["Parameters"]
    values: dict[str, Value] = {}
    for parameter in found:
        name = str(parameter["Name"]).replace(path, "", 1).lstrip("/")
        values[name] = transform_value(name, parameter.get("Value"), transform,
                                       raise_on_transform_error)
    return values


def get_parameters_by_name(parameters: dict[str, Any], transform: str | None = None,
                           decrypt: bool | None = None, max_age: int | None = None,
                           raise_on_error: bool = True) -> dict[str, Value]:
    """Several parameters by name, each with optional options of its own (``transform``,
    ``decrypt``, ``max_age``), in as few batch reads as their options allow. With
    ``raise_on_error=False``, names that failed are listed under ``_errors``."""
    _check(transform)
    groups: dict[tuple[bool, int | None], list[str]] = {}
    for name, options in parameters.items():
        options = options or {}
        key = (_decrypt(options.get("decrypt", decrypt)), options.get("max_age", max_age))
        groups.setdefault(key, []).append(name)
    values: dict[str, Value] = {}
    errors: list[str] = []
    for (wants_decrypt, age), names in groups.items():
        for start in range(0, len(names), 50):
            chunk = names[start:start + 50]
            query = [("name", name) for name in chunk]
            query += [("withDecryption", str(wants_decrypt).lower()), *_options(False, age)]
            body = _default.read("/systemsmanager/parameters/batch", query).json()
            by_name = {str(p["Name"]) + (p.get("Selector") or ""): p for p in body["Parameters"]}
            by_plain = {str(p["Name"]): p for p in body["Parameters"]}
            for name in chunk:
                parameter = by_name.get(name) or by_plain.get(name)
                if parameter is None:
                    errors.append(name)
                    continue
                how = (parameters[name] or {}).get("transform", transform)
                try:
                    values[name] = transform_value(name, parameter.get("Value"), how)
                except TransformParameterError:
                    if raise_on_error:
                        raise
                    errors.append(name)
    if errors and raise_on_error:
        raise GetParameterError("parameters not found: " + ", ".join(errors[:20]),
                                "ParameterNotFound", 400)
    if not raise_on_error:
        values["_errors"] = errors
    return values


def _secret_value(secret: dict[str, Any]) -> Value:
    if secret.get("SecretString") is not None:
        text: str = secret["SecretString"]
        return text
    binary = secret.get("SecretBinary")
    return base64.b64decode(binary) if binary is not None else None


def get_secret(name: str, transform: str | None = None, force_fetch: bool = False,
               max_age: int | None = None, role_arn: str | None = None,
               **sdk_options: Any) -> Value:
    """One secret's value: a string, or bytes for a binary secret (``transform`` as above;
    ``role_arn``: read as that IAM role, the Secrets Manager Agent's ``roleArn``)."""
    _check(transform)
    query = [("secretId", name), *_options(force_fetch, max_age, role_arn)]
    if transform is not None:
        query.append(("transform", transform))
        return _transformed(_default.read("/secretsmanager/get", query))
    return _secret_value(_default.read("/secretsmanager/get", query).json())


def get_secrets_by_name(names: list[str], transform: str | None = None,
                        force_fetch: bool = False, max_age: int | None = None,
                        role_arn: str | None = None, **sdk_options: Any) -> dict[str, Value]:
    """Several secrets in one batch read (``/secretsmanager/batch``), keyed by the name asked."""
    _check(transform)
    values: dict[str, Value] = {}
    for start in range(0, len(names), 50):
        chunk = names[start:start + 50]
        query = [("secretId", name) for name in chunk] + _options(force_fetch, max_age,
                                                                   role_arn)
        body = _default.read("/secretsmanager/batch", query).json()
        if body["Errors"]:
            first = body["Errors"][0]
            raise GetParameterError(f"{first['ErrorCode']}: secret {first['SecretId']!r}: "
                                    f"{first['Message']}", str(first["ErrorCode"]), 400)
        for name, secret in zip(chunk, body["SecretValues"]):
            value = _secret_value(secret)
            values[name] = transform_value(name, value, transform) \
                if isinstance(value, str) else value
    return values
