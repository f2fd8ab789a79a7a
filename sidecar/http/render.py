"""Answers for the reads beyond single AWS JSON: transformed single values and group reads.

The plain single read never comes here: its cached bytes are the answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sidecar.aws.errors import NOT_FOUND
from sidecar.aws.shapes import member_json
from sidecar.cache.resolver import BYPASS, HIT, MISS, STALE, Answer
from sidecar.core import transform
from sidecar.core.errors import ApiError
from sidecar.core.key import SECRETS, SSM, Key
from sidecar.core.query import PATH_READ, SECRET_BATCH_READ, SSM_BATCH_READ, Read
from sidecar.core.transform import Rendered

_JSON = "application/json"


def single(read: Read, answer: Answer) -> Rendered:
    """A single read with ``transform`` or ``jsonKey``."""
    document = json.loads(answer.body)
    if read.key.service == SSM:
        parameter = document["Parameter"]
        return transform.single(parameter.get("Value"), None, read.key.name, read.transform,
                                read.json_key)
    return transform.single(document.get("SecretString"), document.get("SecretBinary"),
                            read.key.name, read.transform, read.json_key)


def _transformed(member: bytes, field: str, name: str, read: Read) -> bytes:
    """A group member with its ``Value`` / ``SecretString`` transformed. A binary secret's
    ``SecretBinary`` is read as UTF-8 text (as Powertools does); its result goes in
    ``SecretString`` and ``SecretBinary`` becomes null, so one field holds the answer."""
    auto_name = name
    if read.kind == PATH_READ:  # Powertools' get_multiple keys (and so ``auto``) by relative name
        auto_name = (name[len(read.key.name):] if name.startswith(read.key.name) else name)
        auto_name = auto_name.lstrip("/")
    how = transform.effective(read.transform, auto_name, group=True)
    if how is None and read.json_key is None:
        return member
    document: dict[str, Any] = json.loads(member)
    binary = document.get("SecretBinary") if field == "SecretString" else None
    document[field] = transform.value_of(document.get(field), binary, name, how, read.json_key)
    if binary is not None:
        document["SecretBinary"] = None
    return json.dumps(document, separators=(",", ":")).encode()


def group_state(read: Read, answers: Sequence[Answer | ApiError]) -> tuple[str, int]:
    states = [a.state for a in answers if isinstance(a, Answer)]
    ages = [a.age for a in answers if isinstance(a, Answer)]
    if read.refresh_now:
        state = BYPASS
    elif STALE in states:
        state = STALE
    elif states and all(s == HIT for s in states):
        state = HIT
    else:
        state = MISS
    return state, max(ages, default=0)


def batch(read: Read, answers: Sequence[Answer | ApiError]) -> bytes:
    """``/systemsmanager/parameters/batch`` and ``/secretsmanager/batch`` bodies.

    Per-id answers stay beside the others, as AWS's batch APIs give them: a parameter not
    found is listed in ``InvalidParameters``, a secret's own error in ``Errors``. Anything else
    (a whole call failed: AWS unreachable, throttled, denied, with nothing stale to serve)
    fails the read with that error's status and body (review finding S3-7).
    """
    found: list[bytes] = []
    missing: list[Key] = []
    errors: list[dict[str, str]] = []
    for key, answer in zip(read.keys, answers, strict=True):
        if isinstance(answer, ApiError):
            if read.kind == SSM_BATCH_READ and answer.item and answer.code in NOT_FOUND:
                missing.append(key)
            elif read.kind == SECRET_BATCH_READ and answer.item:
                errors.append({"SecretId": key.name, "ErrorCode": answer.code,
                               "Message": answer.message})
            else:
                raise answer
            continue
        if read.kind == SSM_BATCH_READ:
            found.append(_transformed(member_json(answer.body, SSM), "Value", key.name, read))
        else:
            found.append(_transformed(member_json(answer.body, SECRETS), "SecretString",
                                      key.name, read))
    listed = b"[" + b",".join(found) + b"]"
    if read.kind == SSM_BATCH_READ:
        invalid = json.dumps([key.ssm_name() for key in missing]).encode()
        return (b'{"Parameters":' + listed + b',"InvalidParameters":' + invalid
                + b',"ResultMetadata":{}}')
    assert read.kind == SECRET_BATCH_READ
    return (b'{"SecretValues":' + listed + b',"Errors":'
            + json.dumps(errors, separators=(",", ":")).encode() + b',"ResultMetadata":{}}')


def path(read: Read, answer: Answer) -> bytes:
    """``/systemsmanager/parameters/path``: the cached body, members transformed if asked."""
    assert read.kind == PATH_READ
    if read.transform is None and read.json_key is None:
        return answer.body
    document = json.loads(answer.body)
    parameters = []
    for parameter in document["Parameters"]:
        member = json.dumps(parameter).encode()
        parameters.append(json.loads(_transformed(member, "Value", str(parameter["Name"]), read)))
    document["Parameters"] = parameters
    return json.dumps(document, separators=(",", ":")).encode()
