"""Secrets Manager: GetSecretValue, BatchGetSecretValue (batches of 20) and ListSecrets by tag
key (for prefetch), each answer rendered to the body served."""

from __future__ import annotations

from typing import Any

from sidecar.aws.clients import Clients
from sidecar.aws.errors import item_error, translate
from sidecar.aws.identity import secret_ids
from sidecar.aws.regions import region_of
from sidecar.aws.shapes import BatchAnswer, render_secret
from sidecar.core.errors import ApiError
from sidecar.core.key import SECRETS, Key

BATCH = 20  # BatchGetSecretValue takes at most 20 ids
LIST_PAGE = 100  # ListSecrets returns at most 100 a page
MAX_LIST_PAGES = 100


async def get_secret_value(clients: Clients, key: Key) -> bytes:
    """One secret's body; raises ``ApiError``."""
    kwargs: dict[str, str] = {"SecretId": key.name}
    if key.version_id:
        kwargs["VersionId"] = key.version_id
    if key.version_stage:
        kwargs["VersionStage"] = key.version_stage
    try:
        response = await clients.call(SECRETS, "get_secret_value", key.describe(), key.role,
                                      region_of(key.name, clients.home_region),
                                      **kwargs)
    except Exception as exc:
        raise translate(exc) from None
    return render_secret(response)


async def batch_get_secret_value(clients: Clients, keys: list[Key]) -> BatchAnswer:
    """BatchGetSecretValue for up to 20 plain keys (no version selector: the API takes none)
    sharing a role. Each answer goes to every key naming it (name, ARN or partial ARN); each
    entry of AWS's ``Errors`` to its id, classified as a single read would be (S3-13)."""
    wanted: dict[str, list[Key]] = {}
    for key in keys:
        wanted.setdefault(key.name, []).append(key)
    try:
        response = await clients.call(SECRETS, "batch_get_secret_value", f"{len(keys)} ids",
                                      keys[0].role, region_of(keys[0].name, clients.home_region),
                                      SecretIdList=list(wanted))
    except Exception as exc:
        raise translate(exc) from None
    found: dict[Key, bytes] = {}
    for secret in response.get("SecretValues", []):
        body = render_secret(secret)
        for secret_id in secret_ids(secret):
            for key in wanted.get(secret_id, ()):
                found[key] = body
    errors: dict[Key, ApiError] = {}
    for error in response.get("Errors", []):
        for key in wanted.get(str(error.get("SecretId", "")), ()):
            if key not in found:
                errors[key] = item_error(str(error.get("ErrorCode") or ""),
                                         str(error.get("Message") or ""))
    return found, errors


async def list_tagged(clients: Clients, tag: str, role: str | None, limit: int) -> list[str]:
    """Names of the secrets carrying the tag key ``tag`` (at most ``limit``): ListSecrets with
    a ``tag-key`` filter, every page. The filter matches by prefix, so each answer's own tags
    are checked for the exact key."""
    kwargs: dict[str, Any] = {"Filters": [{"Key": "tag-key", "Values": [tag]}],
                              "MaxResults": LIST_PAGE}
    names: list[str] = []
    try:
        for _page in range(MAX_LIST_PAGES):
            response = await clients.call(SECRETS, "list_secrets", f"tag-key {tag}", role,
                                          **kwargs)
            for secret in response.get("SecretList", []):
                tags = {str(pair.get("Key")) for pair in secret.get("Tags") or []}
                if tag in tags and secret.get("Name"):
                    names.append(str(secret["Name"]))
            token = response.get("NextToken")
            if not token or len(names) >= limit:
                break
            kwargs["NextToken"] = token
    except Exception as exc:
        raise translate(exc) from None
    return names[:limit]
