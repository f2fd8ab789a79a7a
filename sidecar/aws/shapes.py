"""AWS's answers as the bodies the daemon serves, rendered once at fetch time (a hit never
serialises anything): the AWS extension's JSON, with RFC 3339 dates and its null fields."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from sidecar.core.errors import ApiError
from sidecar.core.key import SSM, Key

# The AWS extension always sends these, null when empty, and clients test for the key.
_PARAMETER_NULLS = ("Selector", "SourceResult")
_SECRET_NULLS = ("SecretString", "SecretBinary")
_TAIL = b',"ResultMetadata":{}}'
# A batch call's answer: the bodies found, and AWS's word on ids it did not return. An id in
# neither was not matched, and is fetched alone (never reported as not found).
BatchAnswer = tuple[dict[Key, bytes], dict[Key, ApiError]]


def rfc3339(value: object) -> object:
    """``2024-05-01T12:00:00.123Z`` for a datetime; anything else unchanged."""
    if not isinstance(value, datetime):
        return value
    utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def shape_parameter(parameter: dict[str, Any]) -> dict[str, Any]:
    """One parameter as the extension renders it: RFC 3339 dates, null fields present."""
    shaped = {field: rfc3339(value) for field, value in parameter.items()}
    for field in _PARAMETER_NULLS:
        shaped.setdefault(field, None)
    return shaped


def shape_secret(secret: dict[str, Any]) -> dict[str, Any]:
    """One secret value as the extension renders it: binary as base64, null fields present."""
    shaped: dict[str, Any] = {}
    for field, value in secret.items():
        if field == "ResponseMetadata":
            continue
        if field == "SecretBinary" and isinstance(value, bytes | bytearray):
            value = base64.b64encode(value).decode()
        shaped[field] = rfc3339(value)
    for field in _SECRET_NULLS:
        shaped.setdefault(field, None)
    return shaped


def render_parameter(parameter: dict[str, Any]) -> bytes:
    """The body of ``/systemsmanager/parameters/get``: AWS's GetParameter JSON."""
    return dumps({"Parameter": shape_parameter(parameter), "ResultMetadata": {}})


def render_shaped_parameter(shaped: dict[str, Any]) -> bytes:
    return dumps({"Parameter": shaped, "ResultMetadata": {}})


def render_secret(secret: dict[str, Any]) -> bytes:
    """The body of ``/secretsmanager/get``: AWS's GetSecretValue JSON, binary as base64."""
    return dumps({**shape_secret(secret), "ResultMetadata": {}})


def member_json(body: bytes, kind: str) -> bytes:
    """A cached single-read body as a group member: the parameter object, or the secret's
    fields without ``ResultMetadata`` (bytes sliced, not re-serialised: we rendered them)."""
    if kind == SSM:
        return body[len(b'{"Parameter":'):-len(_TAIL)]
    return body[:-len(_TAIL)] + b"}"
