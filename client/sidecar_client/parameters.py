"""Functions shaped like Powertools' ``parameters`` utility, answered by the daemon.

Nothing is cached in this process: the daemon's cache is shared by every process and language
beside it, refreshes busy keys ahead of expiry and serves stale values through AWS outages, so
a second in-process cache would only add staleness. ``max_age`` (or Powertools'
``POWERTOOLS_PARAMETERS_MAX_AGE``) and ``force_fetch`` are passed to the daemon (``maxAge``,
``refreshNow``). Transforms are applied here, by Powertools' rules (``transform.py``), to the
value the daemon serves from its cache.

Powertools passes ``**sdk_options`` to boto3. Here the options that select another value are
passed to the daemon (``VersionId``, ``VersionStage``, ``ParameterFilters`` on Type, KeyId or
Label), those Powertools itself overrides or that only size pages are accepted, and any other
raises ``TypeError`` naming it: an option is never silently dropped.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable

from sidecar_client._transport import Transport
from sidecar_client.errors import (
    GetParameterError,
    InvalidRequest,
    TransformParameterError,
    from_response,
)
from sidecar_client.transform import TRANSFORMS, Value, json_field, transform_value

__all__ = ["TRANSFORMS", "Value", "get_parameter", "get_parameters", "get_parameters_by_name",
           "get_secret", "get_secrets_by_name", "transform_value", "transport"]

MAX_AGE_VARIABLE = "POWERTOOLS_PARAMETERS_MAX_AGE"
DECRYPT_VARIABLE = "POWERTOOLS_PARAMETERS_SSM_DECRYPT"
MAX_AGE_SECS = 86400  # the daemon's bound on ``maxAge``
BATCH = 50  # names per batch read (the daemon takes up to 100; the query string is bounded too)
ERRORS_KEY = "_errors"
_TRUE = ("1", "y", "yes", "t", "true", "on")  # Powertools' strtobool
_FALSE = ("0", "n", "no", "f", "false", "off")

_default = Transport()


def transport() -> Transport:
    """The module's shared transport (one keep-alive connection per thread)."""
    return _default


def _decrypt(decrypt: bool | None) -> bool:
    """``decrypt``, or ``POWERTOOLS_PARAMETERS_SSM_DECRYPT`` read as Powertools reads it."""
    if decrypt is not None:
        return decrypt
    raw = os.environ.get(DECRYPT_VARIABLE, "false").lower()
    if raw in _TRUE or raw in _FALSE:
        return raw in _TRUE
    raise ValueError(f"{DECRYPT_VARIABLE} must be one of " + ", ".join(_TRUE + _FALSE)
                     + f"; it is {raw[:32]!r}")


def _max_age(max_age: int | None) -> int | None:
    """``max_age``, or ``POWERTOOLS_PARAMETERS_MAX_AGE`` read as Powertools reads it
    (``int()`` of it; anything else is a ``ValueError``). Unset: None, the daemon's TTL."""
    if max_age is not None:
        return max_age
    raw = os.environ.get(MAX_AGE_VARIABLE)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{MAX_AGE_VARIABLE} must be a whole number of seconds (Powertools "
                         f"reads it with int()); it is {raw[:32]!r}") from None


def _options(force_fetch: bool, max_age: int | None,
             role_arn: str | None = None) -> list[tuple[str, str]]:
    query: list[tuple[str, str]] = []
    if force_fetch:
        query.append(("refreshNow", "true"))
    age = _max_age(max_age)
    if age is not None:  # Powertools: 0 or less caches nothing; no TTL is over a day
        query.append(("maxAge", str(min(MAX_AGE_SECS, max(0, int(age))))))
    if role_arn is not None:
        query.append(("roleArn", role_arn))  # read as that IAM role (STS AssumeRole)
    return query


def _check(transform: str | None) -> None:
    if transform and transform not in TRANSFORMS:
        raise TransformParameterError(f"unknown transform {transform!r}: use one of "
                                      + ", ".join(TRANSFORMS), "TransformFailed", 400)


def _refuse(function: str, sdk_options: Mapping[str, Any], accepted: Iterable[str]) -> None:
    """``TypeError`` for the first option this function cannot honour through the daemon."""
    allowed = set(accepted)
    for option in sdk_options:
        if option not in allowed:
            raise TypeError(f"{function}() cannot honour the option {option!r} through the "
                            "daemon; it is refused rather than ignored, since it could change "
                            "the value")


def _finish(name: str, value: str | bytes | None, transform: str | None,
            json_key: str | None) -> Value:
    if json_key is not None:
        selected: Value = json_field(name, value, transform, json_key)
        return selected
    return transform_value(name, value, transform)


def get_parameter(name: str, transform: str | None = None, decrypt: bool | None = None,
                  force_fetch: bool = False, max_age: int | None = None,
                  role_arn: str | None = None, json_key: str | None = None,
                  **sdk_options: Any) -> Value:
    """One parameter's value (``transform``: ``json``, ``binary`` or ``auto``; ``name:3`` or
    ``name:label`` selects a version; ``role_arn``: read as that IAM role; ``json_key``: one
    field of a JSON value, by the daemon's ``jsonKey`` rule)."""
    _check(transform)
    _refuse("get_parameter", sdk_options, ("Name", "WithDecryption"))  # Powertools sets both
    query = [("name", name), ("withDecryption", str(_decrypt(decrypt)).lower()),
             *_options(force_fetch, max_age, role_arn)]
    value = _default.read("/systemsmanager/parameters/get", query).json()["Parameter"]["Value"]
    return _finish(name, value, transform, json_key)


_PATH_FILTERS = {"Type": "type", "KeyId": "keyId", "Label": "label"}


def _path_filters(filters: Any) -> list[tuple[str, str]]:
    """``ParameterFilters`` the daemon's path read can apply: one ``Type``, ``KeyId`` or
    ``Label`` filter each, ``Option`` ``Equals``, one value."""
    query: list[tuple[str, str]] = []
    for item in filters if isinstance(filters, list) else [filters]:
        key = item.get("Key") if isinstance(item, dict) else None
        field = _PATH_FILTERS.get(key) if isinstance(key, str) else None
        values = item.get("Values") if isinstance(item, dict) else None
        if field is None or any(f == field for f, _ in query) \
                or set(item) - {"Key", "Option", "Values"} \
                or item.get("Option", "Equals") != "Equals" \
                or not isinstance(values, list) or len(values) != 1 \
                or not isinstance(values[0], str):
            raise TypeError(f"get_parameters() cannot honour the ParameterFilters entry for "
                            f"{key!r} through the daemon: it takes one Type, KeyId or Label "
                            "filter each, with Option 'Equals' and one value")
        query.append((field, values[0]))
    return query


def get_parameters(path: str, transform: str | None = None, recursive: bool = True,
                   decrypt: bool | None = None, force_fetch: bool = False,
                   max_age: int | None = None, raise_on_transform_error: bool = False,
                   role_arn: str | None = None, **sdk_options: Any) -> dict[str, Value]:
    """Every parameter under ``path``, keyed by its name after the path (as Powertools)."""
    _check(transform)
    paging = sdk_options.get("PaginationConfig")
    if paging is not None and (not isinstance(paging, dict) or set(paging) - {"PageSize"}):
        raise TypeError("get_parameters() cannot honour PaginationConfig other than PageSize "
                        "through the daemon: every page is always read")
    _refuse("get_parameters", sdk_options, ("Path", "WithDecryption", "Recursive", "MaxResults",
                                            "PaginationConfig", "ParameterFilters"))
    query = [("path", path), ("recursive", str(recursive).lower()),
             ("withDecryption", str(_decrypt(decrypt)).lower()),
             *_path_filters(sdk_options.get("ParameterFilters", [])),
             *_options(force_fetch, max_age, role_arn)]
    found = _default.read("/systemsmanager/parameters/path", query).json()["Parameters"]
    values: dict[str, Value] = {}
    for parameter in found:
        name = str(parameter["Name"])
        if name.startswith(path):
            name = name[len(path):]
        name = name.lstrip("/")
        values[name] = transform_value(name, parameter.get("Value"), transform,
                                       raise_on_transform_error)
    return values


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]


def _split_selector(entry: str) -> tuple[str, str | None]:
    """``name``, ``name:3`` or ``name:label`` as the daemon reads a batch entry: (name or ARN,
    selector); an ARN's own colons are not selectors."""
    prefix = ""
    if entry.startswith("arn:") and ":parameter/" in entry:
        head, _, entry = entry.partition(":parameter/")
        prefix = head + ":parameter/"
    name, sep, selector = entry.rpartition(":")
    if not sep or not name or not selector or "/" in selector:
        return prefix + entry, None
    return prefix + name, selector


def _parameter_identity(name: str) -> str:
    """The parameter a name or ARN refers to: ``arn:...:parameter/a/b`` and ``/a/b`` -> ``a/b``."""
    if name.startswith("arn:") and ":parameter/" in name:
        name = name.split(":parameter/", 1)[1]
    return name.lstrip("/")


def _is_parameter(asked: str, member: Mapping[str, Any]) -> bool:
    """Whether ``member`` can be the answer to ``asked``, by SSM's identity rules: the same
    parameter (by name or ARN) and, where the answer shows it, the selector asked for."""
    name, selector = _split_selector(asked)
    if _parameter_identity(name) not in (_parameter_identity(str(member.get("Name") or "")),
                                         _parameter_identity(str(member.get("ARN") or ""))):
        return False
    echoed = member.get("Selector")
    if echoed:
        return selector is not None and echoed == ":" + selector
    if selector is not None and selector.isdigit() and member.get("Version") is not None:
        return int(member["Version"]) == int(selector)
    return True


def _is_secret(asked: str, member: Mapping[str, Any]) -> bool:
    """Whether ``member`` is the secret ``asked`` names: by name, ARN or partial ARN (the ARN
    without the ``-`` and six characters Secrets Manager appends)."""
    arn = str(member.get("ARN") or "")
    if asked in (member.get("Name"), arn):
        return True
    return asked.startswith("arn:") and arn.startswith(asked + "-") \
        and len(arn) == len(asked) + 7


def _paired(asked: list[str], members: list[dict[str, Any]],
            same: Callable[[str, Mapping[str, Any]], bool]) -> list[tuple[str, dict[str, Any]]]:
    """The daemon answers a batch's members in request order, leaving out the ones it lists as
    not found: pair them by position, checked against AWS's identity rules so that a value is
    never put under another name."""
    if len(asked) != len(members) or not all(map(same, asked, members)):
        raise GetParameterError("the daemon's answer to a batch read does not match the names "
                                "asked (is the daemon older than the client?)",
                                "UnexpectedAnswer", 200)
    return list(zip(asked, members))


def get_parameters_by_name(parameters: dict[str, Any], transform: str | None = None,
                           decrypt: bool | None = None, max_age: int | None = None,
                           raise_on_error: bool = True) -> dict[str, Value]:
    """Several parameters by name (or ARN, ``name:3``, ``name:label``), each with optional
    options of its own (``transform``, ``decrypt``, ``max_age``), in as few batch reads as their
    options allow; keyed as asked. With ``raise_on_error=False``, names not found are listed
    under ``_errors`` and a value that does not transform is None (as Powertools)."""
    _check(transform)
    if not raise_on_error and ERRORS_KEY in parameters:
        raise InvalidRequest(f"a parameter named {ERRORS_KEY!r} cannot be read with "
                             "raise_on_error=False", "InvalidParameterValue", 400)
    default_age = _max_age(max_age)
    groups: dict[tuple[bool, int | None], list[str]] = {}
    for name, options in parameters.items():
        options = options or {}
        _check(options.get("transform"))
        key = (_decrypt(options.get("decrypt", decrypt)), options.get("max_age", default_age))
        groups.setdefault(key, []).append(name)
    values: dict[str, Value] = {}
    errors: list[str] = []
    for (wants_decrypt, age), names in groups.items():
        for chunk in _chunks(names):
            query = [("name", name) for name in chunk]
            query += [("withDecryption", str(wants_decrypt).lower()), *_options(False, age)]
            body = _default.read("/systemsmanager/parameters/batch", query).json()
            missing = set(body.get("InvalidParameters") or ())
            errors += [name for name in chunk if name in missing]
            answered = [name for name in chunk if name not in missing]
            for asked, parameter in _paired(answered, body["Parameters"], _is_parameter):
                how = (parameters[asked] or {}).get("transform") or transform
                # ``auto`` looks at the parameter's name, as Powertools does (not ``name:3``).
                values[asked] = transform_value(str(parameter.get("Name") or asked),
                                                parameter.get("Value"), how, raise_on_error)
    if errors and raise_on_error:
        raise from_response(400, "ParameterNotFound", "parameters not found: "
                            + ", ".join(repr(name[:256]) for name in errors[:20]))
    if not raise_on_error:
        values[ERRORS_KEY] = errors
    return values


def _secret_value(secret: Mapping[str, Any]) -> str | bytes | None:
    if secret.get("SecretString") is not None:
        text: str = secret["SecretString"]
        return text
    binary = secret.get("SecretBinary")
    return base64.b64decode(binary) if binary is not None else None


def get_secret(name: str, transform: str | None = None, force_fetch: bool = False,
               max_age: int | None = None, role_arn: str | None = None,
               json_key: str | None = None, **sdk_options: Any) -> Value:
    """One secret's value: a string, or bytes for a binary secret (``transform`` as above;
    ``VersionId``/``VersionStage`` select a version, as in Powertools; ``role_arn``: read as
    that IAM role, the Secrets Manager Agent's ``roleArn``; ``json_key`` as above)."""
    _check(transform)
    _refuse("get_secret", sdk_options, ("SecretId", "VersionId", "VersionStage"))
    query = [("secretId", name)]
    for option, key in (("VersionId", "versionId"), ("VersionStage", "versionStage")):
        if sdk_options.get(option) is not None:
            query.append((key, str(sdk_options[option])))
    query += _options(force_fetch, max_age, role_arn)
    secret = _default.read("/secretsmanager/get", query).json()
    return _finish(name, _secret_value(secret), transform, json_key)


def get_secrets_by_name(names: list[str], transform: str | None = None,
                        force_fetch: bool = False, max_age: int | None = None,
                        role_arn: str | None = None, raise_on_transform_error: bool = False,
                        **sdk_options: Any) -> dict[str, Value]:
    """Several secrets (names, ARNs or partial ARNs) in batch reads (``/secretsmanager/batch``),
    keyed as asked; a secret that cannot be read raises its typed error."""
    _check(transform)
    # Powertools drops SecretIdList and NextToken itself; MaxResults only sizes its pages.
    _refuse("get_secrets_by_name", sdk_options, ("SecretIdList", "NextToken", "MaxResults"))
    if not names:
        raise InvalidRequest("give at least one secret name", "MissingParameter", 400)
    values: dict[str, Value] = {}
    for chunk in _chunks(list(dict.fromkeys(names))):  # the daemon answers each id once
        query = [("secretId", name) for name in chunk] + _options(force_fetch, max_age,
                                                                   role_arn)
        body = _default.read("/secretsmanager/batch", query).json()
        failed = {str(error.get("SecretId")): error for error in body.get("Errors") or ()}
        refused = [name for name in chunk if name in failed]
        if refused:
            first = failed[refused[0]]
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            raise from_response(400, str(first.get("ErrorCode") or ""),
                                f"secret {refused[0][:256]!r}: {first.get('Message')}{more}")
        for asked, secret in _paired(chunk, body["SecretValues"], _is_secret):
            values[asked] = transform_value(str(secret.get("Name") or asked),
                                            _secret_value(secret), transform,
                                            raise_on_transform_error)
    return values
