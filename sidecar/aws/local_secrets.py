"""Local mode's Secrets Manager (``local.LocalUpstream``): a secret found by name or ARN, its
version by stage or id, as GetSecretValue answers it, and Parameter Store's
``/aws/reference/secretsmanager/`` view of it; AWS's errors and messages where none is found."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sidecar.config.local_data import CURRENT, LocalData, Secret, SecretVersion
from sidecar.core.errors import ApiError
from sidecar.core.key import Key
from sidecar.core.query import SECRET_REFERENCE

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def not_found(code: str, message: str) -> ApiError:
    """AWS's word on one id (400, ``item``)."""
    return ApiError(400, code, message[:1024], item=True)


def secret_document(data: LocalData, key: Key) -> dict[str, Any]:
    """GetSecretValue's answer for ``key``; raises ``ResourceNotFoundException``."""
    secret = find_secret(data, key.name)
    if secret is None:
        raise not_found("ResourceNotFoundException",
                        "Secrets Manager can't find the specified secret.")
    version = _secret_version(secret, key.version_id, key.version_stage)
    document: dict[str, Any] = {"ARN": secret.arn, "Name": secret.name,
                                "VersionId": version.version_id}
    if version.binary is not None:
        document["SecretBinary"] = version.binary
    else:
        document["SecretString"] = version.string
    document.update(VersionStages=list(version.stages), CreatedDate=version.created)
    return document


def reference_document(data: LocalData, key: Key) -> dict[str, Any]:
    """``/aws/reference/secretsmanager/<id>``: a secret of the file, as Parameter Store
    answers it (the AWS extension's answers, as clients record them: the secret's ARN,
    version 0, the selector a version stage, ``SourceResult`` GetSecretValue's JSON)."""
    if not key.with_decryption:
        raise ApiError(400, "ValidationException", "WithDecryption flag must be True for "
                       "retrieving a Secret Manager secret.", item=True)
    stage = key.label or key.version
    secret = find_secret(data, key.name[len(SECRET_REFERENCE):])
    version = None if secret is None else next(
        (v for v in secret.versions if (stage or CURRENT) in v.stages), None)
    if secret is None or version is None:
        raise not_found("ParameterNotFound", "An error occurred (ParameterNotFound) when "
                        f"referencing Secrets Manager: Secret {key.ssm_name()} not found.")
    source: dict[str, Any] = {"ARN": secret.arn, "name": secret.name,
                              "versionId": version.version_id}
    if version.string is not None:
        source["secretString"] = version.string
    source.update(versionStages=list(version.stages), createdDate=_java_date(
        version.created))
    document: dict[str, Any] = {"Name": key.name, "Type": "SecureString",
                                "Value": version.string, "Version": 0}
    if stage:
        document["Selector"] = f":{stage}"
    document.update(SourceResult=json.dumps(source, separators=(",", ":")),
                    LastModifiedDate=version.created, ARN=secret.arn)
    return document


def find_secret(data: LocalData, secret_id: str) -> Secret | None:
    """By name, or by ARN whatever its region and account: a partial ARN (no suffix), or a
    full one whose ``-`` and six characters may be AWS's own (so production ARNs work)."""
    if not secret_id.startswith("arn:"):
        return data.secrets.get(secret_id)
    parts = secret_id.split(":", 6)
    if len(parts) != 7 or parts[2] != "secretsmanager" or parts[5] != "secret":
        return None
    rest = parts[6]
    found = data.secrets.get(rest)
    if found is None and len(rest) > 7 and rest[-7] == "-":
        found = data.secrets.get(rest[:-7])
    return found


def _secret_version(secret: Secret, version_id: str | None,
                    stage: str | None) -> SecretVersion:
    if version_id:
        version = next((v for v in secret.versions if v.version_id == version_id), None)
        if version is None:
            raise not_found("ResourceNotFoundException", "Secrets Manager can't find the "
                            f"specified secret value for VersionId: {version_id}")
        if stage is None or stage in version.stages:
            return version
    else:
        version = next((v for v in secret.versions if (stage or CURRENT) in v.stages), None)
        if version is not None:
            return version
    raise not_found("ResourceNotFoundException", "Secrets Manager can't find the specified "
                    f"secret value for staging label: {stage}")


def _java_date(value: datetime) -> str:
    """``Nov 16, 2022, 8:22:40 AM``: how Parameter Store writes dates in ``SourceResult``."""
    value = value.astimezone(UTC)
    hour = value.hour % 12 or 12
    return (f"{_MONTHS[value.month - 1]} {value.day}, {value.year}, {hour}:"
            f"{value.minute:02d}:{value.second:02d} {'AM' if value.hour < 12 else 'PM'}")
