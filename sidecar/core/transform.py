"""Value transforms (``transform=``, ``jsonKey=``): applied when a read asks, at serve time, to
the value the cache holds; without them the AWS JSON is served untouched.

Errors name the item and the transform, never the value.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, NamedTuple

from sidecar.core.errors import ApiError, bad_request

TRANSFORMS = ("json", "binary", "stringlist", "raw", "auto")
GROUP_TRANSFORMS = ("json", "stringlist", "auto")
_JSON = "application/json"


class Rendered(NamedTuple):
    body: bytes
    content_type: str


def failed(name: str, what: str) -> ApiError:
    return bad_request("TransformFailed", f"the value of {name[:256]!r} {what}")


def effective(transform: str | None, name: str, group: bool) -> str | None:
    """``auto`` resolved by the name's suffix (Powertools' rule)."""
    if transform != "auto":
        return transform
    if name.endswith(".json"):
        return "json"
    if name.endswith(".binary") and not group:
        return "binary"
    return None if group else "raw"


def _select(value: Any, json_key: str, name: str) -> Any:
    for part in json_key.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise failed(name, f"has no JSON key {json_key[:128]!r}")
    return value


def _parse(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise failed(name, "is not valid JSON") from None


def value_of(text: str | None, binary: str | None, name: str, transform: str | None,
             json_key: str | None) -> Any:
    """The transformed value as a JSON-able object (for JSON answers and group members)."""
    if text is None:
        raise failed(name, "is binary; only transform=binary or raw can serve it")
    if json_key is not None:
        return _select(_parse(text, name), json_key, name)
    if transform == "json":
        return _parse(text, name)
    if transform == "stringlist":
        return text.split(",")
    return text


def single(text: str | None, binary: str | None, name: str, transform: str | None,
           json_key: str | None) -> Rendered:
    """A single read's transformed answer. ``binary`` is a secret's base64 ``SecretBinary``."""
    transform = effective(transform, name, group=False)
    if transform == "binary" or (transform == "raw" and text is None and json_key is None):
        encoded = binary if text is None else text
        try:
            data = base64.b64decode(encoded or "", validate=True)
        except (binascii.Error, ValueError):
            raise failed(name, "is not base64") from None
        return Rendered(data, "application/octet-stream")
    value = value_of(text, binary, name, transform, json_key)
    if transform == "raw" and isinstance(value, str):
        return Rendered(value.encode(), "text/plain; charset=utf-8")
    return Rendered(json.dumps(value, separators=(",", ":")).encode(), _JSON)
