"""The entries of the local mode's file (``config/local_file.py``): each parameter, secret and
S3 object checked by AWS's own rules (names, versions, labels, stages, sizes) into the tuples of
``local_data``. A problem raises ``Problem``: where it is and what is wrong, never a value."""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import json
import mimetypes
import os
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from sidecar.config.local_data import (
    CURRENT,
    PREVIOUS,
    LocalObject,
    Parameter,
    ParameterVersion,
    Secret,
    SecretVersion,
    parameter_arn,
    secret_arn,
)
from sidecar.core.errors import ApiError
from sidecar.core.query import check_label

PARAMETER_TYPES = ("String", "StringList", "SecureString")
DATA_TYPES = ("text", "aws:ec2:image", "aws:ssm:integration")
DEFAULT_KEY_ID = "alias/aws/ssm"
MAX_PARAMETER_BYTES = 8192  # Parameter Store's advanced tier
MAX_SECRET_BYTES = 65536  # Secrets Manager's limit
MAX_VERSIONS = 100  # Parameter Store keeps the last 100
# AWS's naming rules: Parameter Store (PutParameter), Secrets Manager (CreateSecret), S3 (as
# the /s3/get query checks a bucket, sidecar/core/reads.py).
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_.\-/]{1,1011}")
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@\-]{1,512}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_VERSION_ID = re.compile(r"[!-~]{32,64}")
_STAGE = re.compile(r"[!-9;-~]{1,256}")  # printable ASCII but ':' (it would split a name)
_NAMESPACE = uuid.UUID("6f1c1b4e-5d0a-4d8e-9f3e-2b7c1a0d9e11")  # default version ids

_PARAMETER_FIELDS = frozenset({"value", "type", "labels", "modified", "key_id", "data_type",
                               "versions"})
_PARAMETER_VERSION_FIELDS = frozenset({"value", "labels", "modified"})
_SECRET_VERSION_FIELDS = frozenset({"value", "binary", "version_id", "stages", "created"})
_SECRET_FIELDS = _SECRET_VERSION_FIELDS | {"versions", "tags"}
_OBJECT_FIELDS = frozenset({"text", "file", "content_type", "version_id", "modified"})


class Problem(Exception):
    """``where`` in the file (``parameters."/a".versions[1].labels``) and ``what`` is wrong."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(what)
        self.where, self.what = where, what


class Unreadable(Exception):
    """A file cannot be read; ``str(error)`` names it and says why."""


def located(section: str, name: str, *more: str) -> str:
    return f"{section}.{json.dumps(name)}" + "".join(more)


def _known(entry: dict[str, Any], fields: frozenset[str], where: str) -> None:
    unknown = sorted(set(entry) - fields)
    if unknown:
        raise Problem(where, f"unknown field {unknown[0]!r} (expected one of "
                      f"{', '.join(sorted(fields))})")


def _table(entry: Any, where: str, field: str) -> dict[str, Any]:
    """An entry's fields: a bare string is the ``field`` alone."""
    if isinstance(entry, str):
        return {field: entry}
    if not isinstance(entry, dict):
        raise Problem(where, f"must be a string (the {field}) or a table of fields")
    return entry


def _text(entry: dict[str, Any], field: str, where: str, default: str | None = None) -> str:
    value = entry.get(field, default)
    if not isinstance(value, str):
        raise Problem(f"{where}.{field}", "is missing" if value is None else "must be a string")
    return value


def _strings(entry: dict[str, Any], field: str, where: str) -> tuple[str, ...]:
    value = entry.get(field, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Problem(f"{where}.{field}", "must be a list of strings")
    return tuple(value)


def _date(entry: dict[str, Any], field: str, where: str, default: datetime) -> datetime:
    value = entry.get(field, default)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise Problem(f"{where}.{field}", "must be a date (RFC 3339, 2024-05-01T12:00:00Z)")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _versions(entry: dict[str, Any], fields: frozenset[str], where: str) -> list[tuple[
        dict[str, Any], str]]:
    """The entry's versions, each with where it is: a ``versions`` list, or the entry itself."""
    if "versions" not in entry:
        return [(entry, where)]
    if fields & set(entry):
        raise Problem(where, f"give either versions or {', '.join(sorted(fields & set(entry)))}")
    listed = entry["versions"]
    if not isinstance(listed, list) or not listed:
        raise Problem(f"{where}.versions", "must be a non-empty list")
    if len(listed) > MAX_VERSIONS:
        raise Problem(f"{where}.versions", f"has more than {MAX_VERSIONS} versions")
    return [(_table(item, f"{where}.versions[{index}]", "value"), f"{where}.versions[{index}]")
            for index, item in enumerate(listed)]


def parameter(name: str, entry: Any, mtime: datetime) -> Parameter:
    where = located("parameters", name)
    if not _PARAMETER_NAME.fullmatch(name):
        raise Problem(where, "a parameter name is 1-1011 letters, digits, '_', '.', '-', '/'")
    if name.lstrip("/").lower().startswith(("aws", "ssm")):
        raise Problem(where, "a parameter name cannot begin with 'aws' or 'ssm' (AWS's rule; "
                      "/aws/reference/secretsmanager/ names read this file's secrets)")
    entry = _table(entry, where, "value")
    _known(entry, _PARAMETER_FIELDS, where)
    kind = _text(entry, "type", where, "String")
    if kind not in PARAMETER_TYPES:
        raise Problem(f"{where}.type", "must be one of " + ", ".join(PARAMETER_TYPES))
    data_type = _text(entry, "data_type", where, "text")
    if data_type not in DATA_TYPES:
        raise Problem(f"{where}.data_type", "must be one of " + ", ".join(DATA_TYPES))
    key_id = None
    if kind == "SecureString":
        key_id = _text(entry, "key_id", where, DEFAULT_KEY_ID)
    elif "key_id" in entry:
        raise Problem(f"{where}.key_id", "is for SecureString parameters only")
    versions: list[ParameterVersion] = []
    labelled: dict[str, int] = {}
    for number, (item, at) in enumerate(_versions(entry, _PARAMETER_VERSION_FIELDS, where), 1):
        if item is not entry:
            _known(item, _PARAMETER_VERSION_FIELDS, at)
        value = _text(item, "value", at)
        if not value or len(value.encode()) > MAX_PARAMETER_BYTES:
            raise Problem(f"{at}.value", f"must be 1 to {MAX_PARAMETER_BYTES} bytes")
        labels = _strings(item, "labels", at)
        for label in labels:
            try:
                check_label(name, label, f"label {label[:100]!r}")
            except ApiError as exc:
                raise Problem(f"{at}.labels", exc.message) from None
            if label in labelled:
                raise Problem(f"{at}.labels", f"label {label!r} is on version "
                              f"{labelled[label]} already")
            labelled[label] = number
        versions.append(ParameterVersion(number, value, labels, _date(item, "modified", at,
                                                                       mtime)))
    return Parameter(name, kind, tuple(versions), key_id, data_type, parameter_arn(name))


def secret(name: str, entry: Any, mtime: datetime) -> Secret:
    where = located("secrets", name)
    if not _SECRET_NAME.fullmatch(name):
        raise Problem(where, "a secret name is 1-512 letters, digits and / _ + = . @ -")
    entry = _table(entry, where, "value")
    _known(entry, _SECRET_FIELDS, where)
    tags = entry.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise Problem(f"{where}.tags", "must be a table of tag keys and string values")
    items = _versions(entry, _SECRET_VERSION_FIELDS, where)
    staged = any("stages" in item for item, _ in items)
    versions: list[SecretVersion] = []
    staged_on: dict[str, int] = {}
    ids: set[str] = set()
    for index, (item, at) in enumerate(items):
        if item is not entry:
            _known(item, _SECRET_VERSION_FIELDS, at)
        string_value, binary = _secret_value(item, at)
        version_id = _text(item, "version_id", at,
                           str(uuid.uuid5(_NAMESPACE, f"{name}\n{index}")))
        if not _VERSION_ID.fullmatch(version_id) or version_id in ids:
            raise Problem(f"{at}.version_id", "must be 32-64 printable characters, unique "
                          "among the secret's versions")
        ids.add(version_id)
        if staged:
            stages = _strings(item, "stages", at)
        else:  # the last is current, the one before previous, as after a rotation
            stages = {len(items) - 1: (CURRENT,), len(items) - 2: (PREVIOUS,)}.get(index, ())
        for stage in stages:
            if not _STAGE.fullmatch(stage):
                raise Problem(f"{at}.stages", "a stage is 1-256 printable characters but ':'")
            if stage in staged_on:
                raise Problem(f"{at}.stages", f"stage {stage!r} is on version "
                              f"{staged_on[stage] + 1} already")
            staged_on[stage] = index
        versions.append(SecretVersion(version_id, string_value, binary, stages,
                                      _date(item, "created", at, mtime)))
    if CURRENT not in staged_on:
        raise Problem(where, f"no version has the stage {CURRENT}")
    return Secret(name, secret_arn(name), tuple(versions), tuple(tags))


def _secret_value(item: dict[str, Any], at: str) -> tuple[str | None, bytes | None]:
    if ("value" in item) == ("binary" in item):
        raise Problem(at, "give one of value (SecretString) and binary (SecretBinary, base64)")
    if "value" in item:
        value = _text(item, "value", at)
        if len(value.encode()) > MAX_SECRET_BYTES:
            raise Problem(f"{at}.value", f"is over {MAX_SECRET_BYTES} bytes")
        return value, None
    try:
        binary = binascii.a2b_base64(_text(item, "binary", at).encode(), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise Problem(f"{at}.binary", "is not base64") from None
    if not binary or len(binary) > MAX_SECRET_BYTES:
        raise Problem(f"{at}.binary", f"must be 1 to {MAX_SECRET_BYTES} bytes")
    return None, binary


def s3_object(spec: str, entry: Any, mtime: datetime, folder: str,
              read: Callable[[str], tuple[bytes, datetime]]) -> LocalObject:
    """``read``: a file's bytes and modification time; raises ``Unreadable``."""
    where = located("s3", spec)
    bucket, _, key = spec.partition("/")
    if not key or not _BUCKET.fullmatch(bucket) or ".." in bucket or len(key.encode()) > 1024:
        raise Problem(where, 'an object is "bucket/key": a valid S3 bucket name (3-63 '
                      "lowercase letters, digits, '.' and '-'), then a key of 1-1024 bytes")
    entry = _table(entry, where, "text")
    _known(entry, _OBJECT_FIELDS, where)
    if ("text" in entry) == ("file" in entry):
        raise Problem(where, "give one of text and file")
    if "text" in entry:
        body = _text(entry, "text", where).encode()
    else:
        path = os.path.join(folder, _text(entry, "file", where))
        try:
            body, mtime = read(path)
        except Unreadable as exc:
            raise Problem(f"{where}.file", str(exc)) from None
    guessed = mimetypes.guess_type(key, strict=False)[0] or "application/octet-stream"
    version_id = entry.get("version_id")
    if version_id is not None and (not isinstance(version_id, str) or not version_id):
        raise Problem(f"{where}.version_id", "must be a non-empty string")
    return LocalObject(body, _text(entry, "content_type", where, guessed),
                       '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"',
                       _date(entry, "modified", where, mtime), version_id)
