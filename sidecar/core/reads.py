"""The per-route query parsers: a request's decoded pairs into a ``Read`` (SPEC section 2).

Each refuses bad input with a 400 naming the query key, before any AWS call; the shared rules
(percent-decoding, repeated and unknown keys, flags, ``maxAge``/``transform``/``jsonKey``,
labels) are in ``query``.
"""

from __future__ import annotations

import re

from sidecar.core.errors import bad_request
from sidecar.core.key import S3, SECRETS, SSM, SSM_PATH, Key
from sidecar.core.query import (
    EXTRA_KEYS,
    PATH_READ,
    S3_READ,
    SECRET_BATCH_READ,
    SECRET_REFERENCE,
    SSM_BATCH_READ,
    Read,
    check_label,
    collect,
    collect_group,
    extras,
    flag,
    percent_decoded,
    required,
    role_of,
)

# AWS's documented rules, checked here so that a client mistake is a 400 naming the key before
# any AWS call (botocore's own validation would otherwise surface as a 500).
_VERSION_ID = re.compile(r"[\x21-\x7e]{32,64}")
MAX_VERSION_DIGITS = 19  # a signed 64-bit number
PARAMETER_TYPES = ("String", "StringList", "SecureString")
PARAMETER_KEYS = frozenset({"name", "version", "label", "withDecryption", "refreshNow"}) \
    | EXTRA_KEYS
SECRET_KEYS = frozenset({"secretId", "versionId", "versionStage", "refreshNow"}) | EXTRA_KEYS
SECRET_SHORT_KEYS = SECRET_KEYS | {"name"}
SECRET_PATH_KEYS = frozenset({"versionId", "versionStage", "refreshNow"}) | EXTRA_KEYS
BATCH_KEYS = frozenset({"name", "withDecryption", "refreshNow"}) | EXTRA_KEYS
SECRET_BATCH_KEYS = frozenset({"secretId", "refreshNow"}) | EXTRA_KEYS
PATH_KEYS = frozenset({"path", "recursive", "withDecryption", "type", "keyId", "label",
                       "refreshNow"}) | EXTRA_KEYS
S3_KEYS = frozenset({"bucket", "key", "versionId", "refreshNow", "maxAge", "roleArn"})
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
MAX_OBJECT_KEY_BYTES = 1024


def parameter_read(pairs: list[tuple[str, str]]) -> Read:
    """``/systemsmanager/parameters/get`` and ``/parameters/get``."""
    found = collect(pairs, PARAMETER_KEYS)
    name = required(found, "name")
    version = label = None
    # Version and label are exclusive upstream; AWS documents that the first one given wins.
    for selector in found:
        if selector == "version":
            version = found["version"]
            if not version.isascii() or not version.isdigit() or int(version) < 1 \
                    or len(version) > MAX_VERSION_DIGITS:
                raise bad_request(
                    "InvalidParameterValue", "query parameter 'version' must be a positive integer"
                )
            break
        if selector == "label":
            label = found["label"]
            check_label(name, label)
            break
    key = Key(SSM, name, version=version, label=label,
              with_decryption=flag(found, "withDecryption"), role=role_of(found))
    return Read(key, flag(found, "refreshNow"), **extras(found))  # type: ignore[arg-type]


def _secret_read(secret_id: str, found: dict[str, str]) -> Read:
    version_id = found.get("versionId")
    if version_id is not None and not _VERSION_ID.fullmatch(version_id):
        raise bad_request("InvalidParameterValue",
                          "query parameter 'versionId' must be 32-64 printable characters "
                          "without spaces")
    key = Key(SECRETS, secret_id, version_id=found.get("versionId"),
              version_stage=found.get("versionStage"), role=role_of(found))
    return Read(key, flag(found, "refreshNow"), **extras(found))  # type: ignore[arg-type]


def secret_read(pairs: list[tuple[str, str]]) -> Read:
    """``/secretsmanager/get``."""
    found = collect(pairs, SECRET_KEYS)
    return _secret_read(required(found, "secretId"), found)


def secret_short_read(pairs: list[tuple[str, str]]) -> Read:
    """``/secrets/get``: ``name`` or ``secretId`` names the secret."""
    found = collect(pairs, SECRET_SHORT_KEYS)
    if "name" in found and "secretId" in found:
        raise bad_request("InvalidParameterValue", "give 'name' or 'secretId', not both")
    secret_id = found.get("name") or found.get("secretId")
    if secret_id is None:
        raise bad_request("MissingParameter", "query parameter 'secretId' (or 'name') is required")
    return _secret_read(secret_id, found)


def secret_path_read(raw_id: str, pairs: list[tuple[str, str]]) -> Read:
    """``/v1/<secretId>``: the id is the rest of the path, percent-decoded."""
    found = collect(pairs, SECRET_PATH_KEYS)
    secret_id = percent_decoded(raw_id, "the path")
    checked = collect([("secretId", secret_id)], frozenset({"secretId"}))
    return _secret_read(checked["secretId"], found)


def selected(entry: str, decrypt: bool, role: str | None) -> Key:
    """``name``, ``name:3`` (a version) or ``name:label``; an ARN's own colons are not
    selectors (only what follows ``:parameter/`` is looked at). On an
    ``/aws/reference/secretsmanager/`` name every selector is a version stage (a custom stage
    may be all digits), checked as one."""
    prefix = ""
    if entry.startswith("arn:") and ":parameter/" in entry:
        head, _, tail = entry.partition(":parameter/")
        prefix, entry = head + ":parameter/", tail
    name, sep, selector = entry.rpartition(":")
    if not sep or not name or not selector or "/" in selector:
        return Key(SSM, prefix + entry, with_decryption=decrypt, role=role)
    if selector.isdigit() and not name.startswith(SECRET_REFERENCE):
        if int(selector) < 1 or len(selector) > MAX_VERSION_DIGITS:
            raise bad_request("InvalidParameterValue",
                              f"the version in {(prefix + entry)[:128]!r} is invalid")
        return Key(SSM, prefix + name, version=selector, with_decryption=decrypt, role=role)
    check_label(prefix + name, selector, f"the label in {(prefix + entry)[:128]!r}")
    return Key(SSM, prefix + name, label=selector, with_decryption=decrypt, role=role)


def parameter_batch_read(pairs: list[tuple[str, str]]) -> Read:
    """``/systemsmanager/parameters/batch``."""
    names, found = collect_group(pairs, BATCH_KEYS, "name")
    decrypt, role = flag(found, "withDecryption"), role_of(found)
    keys = tuple(dict.fromkeys(selected(name, decrypt, role) for name in names))
    return Read(keys[0], flag(found, "refreshNow"), SSM_BATCH_READ, keys,
                **extras(found, group=True))  # type: ignore[arg-type]


def secret_batch_read(pairs: list[tuple[str, str]]) -> Read:
    """``/secretsmanager/batch``."""
    ids, found = collect_group(pairs, SECRET_BATCH_KEYS, "secretId")
    role = role_of(found)
    keys = tuple(dict.fromkeys(Key(SECRETS, secret_id, role=role) for secret_id in ids))
    return Read(keys[0], flag(found, "refreshNow"), SECRET_BATCH_READ, keys,
                **extras(found, group=True))  # type: ignore[arg-type]


def path_read(pairs: list[tuple[str, str]]) -> Read:
    """``/systemsmanager/parameters/path``: one cache entry keyed by every argument."""
    found = collect(pairs, PATH_KEYS)
    path = required(found, "path")
    if not path.startswith("/"):
        raise bad_request("InvalidParameterValue", "query parameter 'path' must start with '/'")
    options: list[tuple[str, str]] = [("recursive", str(flag(found, "recursive")).lower())]
    if "type" in found:
        if found["type"] not in PARAMETER_TYPES:
            raise bad_request("InvalidParameterValue", "query parameter 'type' must be one of "
                              + ", ".join(PARAMETER_TYPES))
        options.append(("type", found["type"]))
    if "keyId" in found:
        options.append(("keyId", found["keyId"]))
    if "label" in found:
        check_label(path, found["label"])
        options.append(("label", found["label"]))
    key = Key(SSM_PATH, path, with_decryption=flag(found, "withDecryption"),
              options=tuple(options), role=role_of(found))
    return Read(key, flag(found, "refreshNow"), PATH_READ,
                **extras(found, group=True))  # type: ignore[arg-type]


def s3_read(pairs: list[tuple[str, str]]) -> Read:
    """``/s3/get``: an object's bytes (S3's naming rules checked before any call)."""
    found = collect(pairs, S3_KEYS)
    bucket, key = required(found, "bucket"), required(found, "key")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise bad_request("InvalidParameterValue", "query parameter 'bucket' is not a valid S3 "
                          "bucket name (3-63 lowercase letters, digits, '.' and '-')")
    if len(key.encode()) > MAX_OBJECT_KEY_BYTES:
        raise bad_request("InvalidParameterValue",
                          f"query parameter 'key' is longer than {MAX_OBJECT_KEY_BYTES} bytes")
    cache_key = Key(S3, f"s3://{bucket}/{key}", version_id=found.get("versionId"),
                    options=(("bucket", bucket), ("key", key)), role=role_of(found))
    return Read(cache_key, flag(found, "refreshNow"), S3_READ,
                **extras(found))  # type: ignore[arg-type]
