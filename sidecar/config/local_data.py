"""What the local mode serves (``--local FILE``, README "Local mode (no AWS)"), as parsed from
the file by ``local_file``: plain tuples, with the ARNs AWS would give them."""

from __future__ import annotations

import hashlib
import os
import string
from datetime import datetime
from typing import NamedTuple

# The fake account and region of every synthesised ARN (the account AWS's documentation uses).
ACCOUNT, REGION = "123456789012", "us-east-1"
CURRENT, PREVIOUS = "AWSCURRENT", "AWSPREVIOUS"
_SUFFIX_LETTERS = string.ascii_letters + string.digits


class LocalFileError(Exception):
    """The file cannot be served; ``str(error)`` is the one line shown (never a value).
    ``files``: the files read or tried, whose change may fix it."""

    def __init__(self, message: str, files: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.files = files


class ParameterVersion(NamedTuple):
    version: int  # 1, 2, ... in the file's order
    value: str
    labels: tuple[str, ...]
    modified: datetime


class Parameter(NamedTuple):
    name: str
    type: str
    versions: tuple[ParameterVersion, ...]  # oldest first; the last is the current one
    key_id: str | None  # SecureString only
    data_type: str
    arn: str


class SecretVersion(NamedTuple):
    version_id: str
    string: str | None  # exactly one of string and binary
    binary: bytes | None
    stages: tuple[str, ...]
    created: datetime


class Secret(NamedTuple):
    name: str
    arn: str
    versions: tuple[SecretVersion, ...]
    tags: tuple[str, ...]  # tag keys (prefetch by tag key)


class LocalObject(NamedTuple):
    body: bytes
    content_type: str
    etag: str  # '"<md5 hex>"', as S3's for a single-part upload
    modified: datetime
    version_id: str | None


# What tells a changed file: (path, st_mtime_ns, st_size, st_ino); the inode catches a rename
# over it. A signature holds one for each file read, None where it could not be statted.
Stat = tuple[str, int, int, int]
Signature = tuple[Stat | None, ...]


class LocalData(NamedTuple):
    parameters: dict[str, Parameter]  # by name without its leading "/" (AWS's identity)
    secrets: dict[str, Secret]  # by name, in the file's order
    objects: dict[tuple[str, str], LocalObject]  # by (bucket, key)
    buckets: frozenset[str]
    files: tuple[str, ...]  # the file, then the files it names
    signature: Signature  # of ``files``, each taken before it was read


EMPTY = LocalData({}, {}, {}, frozenset(), (), ())


def stat_signature(files: tuple[str, ...]) -> Signature:
    """Each file's ``Stat`` now (None where it cannot be statted)."""
    found: list[Stat | None] = []
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            found.append(None)
            continue
        found.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(found)


def parameter_arn(name: str) -> str:
    return f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{name.lstrip('/')}"


def secret_arn(name: str) -> str:
    """AWS appends ``-`` and six random characters; here they are derived from the name."""
    digest = hashlib.sha256(name.encode()).digest()
    suffix = "".join(_SUFFIX_LETTERS[byte % len(_SUFFIX_LETTERS)] for byte in digest[:6])
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-{suffix}"


