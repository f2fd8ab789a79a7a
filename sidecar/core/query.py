"""Turn a raw query string into a cache ``Key`` (SPEC section 2), or a 400 naming the bad key.

Used by the HTTP server for every read and by the prefetch list, so both speak one syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from sidecar.core.errors import bad_request
from sidecar.core.key import S3, SECRETS, SSM, SSM_PATH, Key
from sidecar.core.transform import GROUP_TRANSFORMS, TRANSFORMS

MAX_NAME_CHARS = 2048
MAX_SELECTOR_CHARS = 256
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TRUE_FALSE = {"true": True, "1": True, "false": False, "0": False}
# AWS's documented rules, checked here so that a client mistake is a 400 naming the key before
# any AWS call (botocore's own validation would otherwise surface as a 500).
_LABEL = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
_LABEL_RESERVED = re.compile(r"(?i)^(aws|ssm|[0-9])")
_VERSION_ID = re.compile(r"[\x21-\x7e]{32,64}")
MAX_VERSION_DIGITS = 19  # a signed 64-bit number

EXTRA_KEYS = frozenset({"maxAge", "transform", "jsonKey", "roleArn"})  # on every read path
# The Secrets Manager Agent's rule for ``roleArn`` (ASCII word characters only).
ROLE_ARN = re.compile(r"arn:[A-Za-z0-9_-]+:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+")
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
MAX_BATCH = 100
MAX_AGE_SECS = 86400
PARAMETER_TYPES = ("String", "StringList", "SecureString")
SINGLE, SSM_BATCH_READ, SECRET_BATCH_READ, PATH_READ = "single", "ssm-batch", "secret-batch", "path"
S3_READ = "s3"


@dataclass(frozen=True, slots=True)
class Read:
    """What a request asks: one key (``single``) or a group, and how to answer it."""

    key: Key
    refresh_now: bool = False
    kind: str = SINGLE
    keys: tuple[Key, ...] = ()  # the members of a batch read, in request order
    max_age: int | None = None
    transform: str | None = None
    json_key: str | None = None

    @property
    def plain(self) -> bool:
        """A single read served as AWS's JSON straight from the cache (the hit path)."""
        return self.kind == SINGLE and self.max_age is None and self.transform is None \
            and self.json_key is None


def split_query(raw: str) -> list[tuple[str, str]]:
    """Split and percent-decode ``raw`` into ordered pairs, refusing malformed encoding.

    ``+`` stays a plus sign: no parameter or secret name can hold a space, while secret names may
    hold ``+``, so reading it literally is the only useful choice.
    """
    pairs: list[tuple[str, str]] = []
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if _BAD_PERCENT.search(part):
            raise bad_request("InvalidParameterValue", "malformed percent-encoding in the query")
        try:
            pairs.append((unquote(name, errors="strict"), unquote(value, errors="strict")))
        except UnicodeDecodeError:
            raise bad_request(
                "InvalidParameterValue", "the query is not valid UTF-8 once decoded"
            ) from None
    return pairs


def _shown(text: str) -> str:
    """A query key as it may appear in an error message: short and printable."""
    return repr(text[:64])


def _collect(pairs: list[tuple[str, str]], allowed: frozenset[str]) -> dict[str, str]:
    """Pairs into a dict (insertion order kept), refusing unknown, repeated and empty keys."""
    found: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise bad_request("UnknownParameter", f"unknown query parameter {_shown(name)}")
        if name in found:
            raise bad_request("InvalidParameterValue", f"query parameter {name!r} is repeated")
        if value == "":
            raise bad_request(
                "MissingParameter" if name in ("name", "secretId") else "InvalidParameterValue",
                f"query parameter {name!r} is empty",
            )
        if _CONTROL.search(value):
            raise bad_request(
                "InvalidParameterValue", f"query parameter {name!r} holds control characters"
            )
        limit = MAX_NAME_CHARS if name in ("name", "secretId") else MAX_SELECTOR_CHARS
        if len(value) > limit:
            raise bad_request(
                "InvalidParameterValue",
                f"query parameter {name!r} is longer than {limit} characters",
            )
        found[name] = value
    return found


def _flag(found: dict[str, str], name: str) -> bool:
    raw = found.get(name)
    if raw is None:
        return False
    flag = _TRUE_FALSE.get(raw.lower())
    if flag is None or (name == "withDecryption" and raw.lower() not in ("true", "false")):
        allowed = "true or false" if name == "withDecryption" else "true, false, 1 or 0"
        raise bad_request("InvalidParameterValue", f"query parameter {name!r} must be {allowed}")
    return flag


def _extras(found: dict[str, str], group: bool = False) -> dict[str, object]:
    """``maxAge``, ``transform`` and ``jsonKey``, validated."""
    extras: dict[str, object] = {}
    raw = found.get("maxAge")
    if raw is not None:
        if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_AGE_SECS:
            raise bad_request("InvalidParameterValue", "query parameter 'maxAge' must be a whole "
                              f"number of seconds from 0 to {MAX_AGE_SECS}")
        extras["max_age"] = int(raw)
    transform = found.get("transform")
    if transform is not None:
        allowed = GROUP_TRANSFORMS if group else TRANSFORMS
        if transform not in allowed:
            raise bad_request("InvalidParameterValue", "query parameter 'transform' must be one "
                              "of " + ", ".join(allowed) + (" on a group read" if group else ""))
        extras["transform"] = transform
    json_key = found.get("jsonKey")
    if json_key is not None:
        if any(not part for part in json_key.split(".")):
            raise bad_request("InvalidParameterValue",
                              "query parameter 'jsonKey' must be dot-separated field names")
        extras["json_key"] = json_key
    return extras


def role_of(found: dict[str, str]) -> str | None:
    """``roleArn``, checked against the role ARN form before any AWS call."""
    role = found.get("roleArn")
    if role is not None and not ROLE_ARN.fullmatch(role):
        raise bad_request("InvalidParameterValue", "query parameter 'roleArn' must be a role "
                          "ARN: arn:<partition>:iam::<12-digit account>:role/<name>")
    return role


def _required(found: dict[str, str], name: str) -> str:
    value = found.get(name)
    if value is None:
        raise bad_request("MissingParameter", f"query parameter {name!r} is required")
    return value


def parameter_read(pairs: list[tuple[str, str]]) -> Read:
    """``/systemsmanager/parameters/get`` and ``/parameters/get``."""
    found = _collect(pairs, PARAMETER_KEYS)
    name = _required(found, "name")
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
            _check_label(label)
            break
    key = Key(SSM, name, version=version, label=label,
              with_decryption=_flag(found, "withDecryption"), role=role_of(found))
    return Read(key, _flag(found, "refreshNow"), **_extras(found))  # type: ignore[arg-type]


def _secret_read(secret_id: str, found: dict[str, str]) -> Read:
    version_id = found.get("versionId")
    if version_id is not None and not _VERSION_ID.fullmatch(version_id):
        raise bad_request("InvalidParameterValue",
                          "query parameter 'versionId' must be 32-64 printable characters "
                          "without spaces")
    key = Key(SECRETS, secret_id, version_id=found.get("versionId"),
              version_stage=found.get("versionStage"), role=role_of(found))
    return Read(key, _flag(found, "refreshNow"), **_extras(found))  # type: ignore[arg-type]


def secret_read(pairs: list[tuple[str, str]]) -> Read:
    """``/secretsmanager/get``."""
    found = _collect(pairs, SECRET_KEYS)
    return _secret_read(_required(found, "secretId"), found)


def secret_short_read(pairs: list[tuple[str, str]]) -> Read:
    """``/secrets/get``: ``name`` or ``secretId`` names the secret."""
    found = _collect(pairs, SECRET_SHORT_KEYS)
    if "name" in found and "secretId" in found:
        raise bad_request("InvalidParameterValue", "give 'name' or 'secretId', not both")
    secret_id = found.get("name") or found.get("secretId")
    if secret_id is None:
        raise bad_request("MissingParameter", "query parameter 'secretId' (or 'name') is required")
    return _secret_read(secret_id, found)


def secret_path_read(raw_id: str, pairs: list[tuple[str, str]]) -> Read:
    """``/v1/<secretId>``: the id is the rest of the path, percent-decoded."""
    found = _collect(pairs, SECRET_PATH_KEYS)
    if _BAD_PERCENT.search(raw_id):
        raise bad_request("InvalidParameterValue", "malformed percent-encoding in the path")
    try:
        secret_id = unquote(raw_id, errors="strict")
    except UnicodeDecodeError:
        raise bad_request("InvalidParameterValue", "the path is not valid UTF-8") from None
    checked = _collect([("secretId", secret_id)], frozenset({"secretId"}))
    return _secret_read(checked["secretId"], found)



def _check_label(label: str) -> None:
    if not _LABEL.fullmatch(label) or _LABEL_RESERVED.match(label):
        raise bad_request(
            "InvalidParameterValue",
            "query parameter 'label' must be 1-100 letters, digits, '.', '-' or '_', "
            "not starting with a digit, 'aws' or 'ssm'",
        )


def _collect_group(pairs: list[tuple[str, str]], allowed: frozenset[str],
                   listed: str) -> tuple[list[str], dict[str, str]]:
    """The repeated ``listed`` key's values in order, and the other keys as ``_collect``."""
    values: list[str] = []
    rest: list[tuple[str, str]] = []
    for name, value in pairs:
        if name == listed:
            values.append(_collect([(name, value)], frozenset({listed}))[listed])
        else:
            rest.append((name, value))
    found = _collect(rest, allowed - {listed})
    if not values:
        raise bad_request("MissingParameter", f"query parameter {listed!r} is required")
    if len(values) > MAX_BATCH:
        raise bad_request("InvalidParameterValue",
                          f"at most {MAX_BATCH} {listed!r} values are accepted in one read")
    return values, found


def _selected(entry: str, decrypt: bool, role: str | None) -> Key:
    """``name``, ``name:3`` (a version) or ``name:label``; an ARN's own colons are not
    selectors (only what follows ``:parameter/`` is looked at)."""
    prefix = ""
    if entry.startswith("arn:") and ":parameter/" in entry:
        head, _, tail = entry.partition(":parameter/")
        prefix, entry = head + ":parameter/", tail
    name, sep, selector = entry.rpartition(":")
    if not sep or not name or not selector or "/" in selector:
        return Key(SSM, prefix + entry, with_decryption=decrypt, role=role)
    if selector.isdigit():
        if int(selector) < 1 or len(selector) > MAX_VERSION_DIGITS:
            raise bad_request("InvalidParameterValue",
                              f"the version in {(prefix + entry)[:128]!r} is invalid")
        return Key(SSM, prefix + name, version=selector, with_decryption=decrypt, role=role)
    _check_label(selector)
    return Key(SSM, prefix + name, label=selector, with_decryption=decrypt, role=role)


def parameter_batch_read(pairs: list[tuple[str, str]]) -> Read:
    """``/systemsmanager/parameters/batch``."""
    names, found = _collect_group(pairs, BATCH_KEYS, "name")
    decrypt, role = _flag(found, "withDecryption"), role_of(found)
    keys = tuple(dict.fromkeys(_selected(name, decrypt, role) for name in names))
    return Read(keys[0], _flag(found, "refreshNow"), SSM_BATCH_READ, keys,
                **_extras(found, group=True))  # type: ignore[arg-type]


def secret_batch_read(pairs: list[tuple[str, str]]) -> Read:
    """``/secretsmanager/batch``."""
    ids, found = _collect_group(pairs, SECRET_BATCH_KEYS, "secretId")
    role = role_of(found)
    keys = tuple(dict.fromkeys(Key(SECRETS, secret_id, role=role) for secret_id in ids))
    return Read(keys[0], _flag(found, "refreshNow"), SECRET_BATCH_READ, keys,
                **_extras(found, group=True))  # type: ignore[arg-type]


def path_read(pairs: list[tuple[str, str]]) -> Read:
    """``/systemsmanager/parameters/path``: one cache entry keyed by every argument."""
    found = _collect(pairs, PATH_KEYS)
    path = _required(found, "path")
    if not path.startswith("/"):
        raise bad_request("InvalidParameterValue", "query parameter 'path' must start with '/'")
    options: list[tuple[str, str]] = [("recursive", str(_flag(found, "recursive")).lower())]
    if "type" in found:
        if found["type"] not in PARAMETER_TYPES:
            raise bad_request("InvalidParameterValue", "query parameter 'type' must be one of "
                              + ", ".join(PARAMETER_TYPES))
        options.append(("type", found["type"]))
    if "keyId" in found:
        options.append(("keyId", found["keyId"]))
    if "label" in found:
        _check_label(found["label"])
        options.append(("label", found["label"]))
    key = Key(SSM_PATH, path, with_decryption=_flag(found, "withDecryption"),
              options=tuple(options), role=role_of(found))
    return Read(key, _flag(found, "refreshNow"), PATH_READ,
                **_extras(found, group=True))  # type: ignore[arg-type]


def s3_read(pairs: list[tuple[str, str]]) -> Read:
    """``/s3/get``: an object's bytes (S3's naming rules checked before any call)."""
    found = _collect(pairs, S3_KEYS)
    bucket, key = _required(found, "bucket"), _required(found, "key")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise bad_request("InvalidParameterValue", "query parameter 'bucket' is not a valid S3 "
                          "bucket name (3-63 lowercase letters, digits, '.' and '-')")
    if len(key.encode()) > MAX_OBJECT_KEY_BYTES:
        raise bad_request("InvalidParameterValue",
                          f"query parameter 'key' is longer than {MAX_OBJECT_KEY_BYTES} bytes")
    cache_key = Key(S3, f"s3://{bucket}/{key}", version_id=found.get("versionId"),
                    options=(("bucket", bucket), ("key", key)), role=role_of(found))
    return Read(cache_key, _flag(found, "refreshNow"), S3_READ,
                **_extras(found))  # type: ignore[arg-type]
