"""Value transforms (``transform=``, ``jsonKey=``): applied when a read asks, at serve time, to
the value the cache holds; without them the AWS JSON is served untouched.

The rules are Powertools' (``aws_lambda_powertools.utilities.parameters.base.transform_value``
and ``get_transform_method``): ``json`` is ``json.loads``, ``binary`` is ``base64.b64decode``
without validation (so line breaks, as ``base64`` and PEM tools wrap at 76 columns, are
skipped), a binary secret is decoded as UTF-8 before ``json.loads``, and ``auto`` looks at
``name.rsplit(".", 1)[-1]``. ``jsonKey`` is the daemon's own; see ``select``.

Errors are ``ApiError`` 400 ``TransformFailed``; they name the item, the transform and the part
of a ``jsonKey`` that failed, never the value.
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
_OCTETS = "application/octet-stream"


class Rendered(NamedTuple):
    body: bytes
    content_type: str


def failed(name: str, what: str) -> ApiError:
    return bad_request("TransformFailed", f"the value of {name[:256]!r} {what}")


def effective(transform: str | None, name: str, group: bool) -> str | None:
    """``auto`` resolved as Powertools' ``get_transform_method`` does: by the text after the
    name's last dot (``x.json`` and a bare ``json`` both parse). For a path read, ``name`` must
    be the name relative to the path, as Powertools' ``get_multiple`` keys it. A group answer is
    JSON, so there ``binary`` leaves the value unchanged."""
    if transform != "auto":
        return transform
    suffix = name.rsplit(".", 1)[-1]
    if suffix == "json":
        return "json"
    if suffix == "binary" and not group:
        return "binary"
    return None if group else "raw"


def decode_base64(text: str, name: str) -> bytes:
    """Powertools' ``base64.b64decode(text)``: characters outside the alphabet (line breaks,
    spaces) are skipped; wrong padding or non-ASCII text is ``TransformFailed``."""
    try:
        return base64.b64decode(text)
    except (binascii.Error, ValueError):
        raise failed(name, "is not base64") from None


def _text(text: str | None, binary: str | None, name: str) -> str:
    """The value as text: a binary secret's bytes decoded as UTF-8, as Powertools does."""
    if text is not None:
        return text
    if binary is None:
        raise failed(name, "is empty")
    try:
        return base64.b64decode(binary).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise failed(name, "is binary and not UTF-8 text") from None


def _parse(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's limit
        raise failed(name, "is not valid JSON") from None


def json_key_problem(json_key: str) -> str | None:
    """Why ``json_key`` is malformed, or None. Two forms: dot-separated keys (``a.b.0``), and a
    JSON Pointer (RFC 6901) when it starts with ``/`` (``/a.b/c``; ``~1`` is ``/``, ``~0`` is
    ``~``), the escape for keys a dotted path cannot name."""
    if json_key.startswith("/"):
        rest = json_key.replace("~0", "").replace("~1", "")
        return "has a '~' not followed by 0 or 1 (JSON Pointer escapes)" if "~" in rest else None
    if any(not part for part in json_key.split(".")):
        return "has an empty key between dots (use a JSON Pointer, /a/b, for such keys)"
    return None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"an array of {len(value)} items"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "null" if value is None else "a number"


def _index(value: list[Any], part: str, pointer: bool) -> int | None:
    """An array index as Python's ``value[int(part)]`` would take it (no negatives)."""
    if not part.isascii() or not part.isdigit() or (pointer and part != str(int(part))):
        return None
    return int(part) if int(part) < len(value) else None


class _Miss(NamedTuple):
    depth: int  # how many parts were consumed before the miss: the deepest miss is reported
    what: str


def _miss(value: Any, parts: list[str], start: int, pointer: bool) -> _Miss:
    if start == 0:
        where = "at the top level"
    else:
        where = "at " + repr("/" + "/".join(parts[:start]) if pointer else ".".join(parts[:start]))
    if isinstance(value, dict):
        return _Miss(start, f"has no key {parts[start]!r} {where}")
    if isinstance(value, list):
        return _Miss(start, f"has {_kind(value)} {where}, with no item {parts[start]!r}")
    return _Miss(start, f"has {_kind(value)} {where}, not an object or array")


def _walk(value: Any, parts: list[str], start: int, failed_at: set[tuple[int, int]]
          ) -> tuple[bool, Any]:
    """Dotted form: at each object take the longest run of parts that is one of its keys, and
    shorter runs when the rest is not found below it. Returns (found, value or deepest _Miss).
    ``failed_at`` memoises (node, start) pairs, so the search is polynomial."""
    if start == len(parts):
        return True, value
    deepest = _miss(value, parts, start, pointer=False)
    if (id(value), start) in failed_at:
        return False, deepest
    candidates: list[tuple[Any, int]] = []
    if isinstance(value, dict):
        for end in range(len(parts), start, -1):
            key = ".".join(parts[start:end])
            if key in value:
                candidates.append((value[key], end))
    elif isinstance(value, list):
        index = _index(value, parts[start], pointer=False)
        if index is not None:
            candidates.append((value[index], start + 1))
    for child, end in candidates:
        found, result = _walk(child, parts, end, failed_at)
        if found:
            return True, result
        if result.depth > deepest.depth:
            deepest = result
    failed_at.add((id(value), start))
    return False, deepest


def _point(value: Any, parts: list[str]) -> tuple[bool, Any]:
    """JSON Pointer form: every token is one key (or array index), exactly."""
    for depth, part in enumerate(parts):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and _index(value, part, pointer=True) is not None:
            value = value[int(part)]
        else:
            return False, _miss(value, parts, depth, pointer=True)
    return True, value


def select(value: Any, json_key: str, name: str) -> Any:
    """The part of a parsed JSON value that ``json_key`` names (``json_key_problem`` is None).

    Dotted keys: a key that exists wins, so ``spring.datasource.password`` selects that literal
    key when the object has it, and ``db.host`` walks into ``db``; digits index arrays. A JSON
    Pointer (``/a.b/c``) names each key exactly. Raises ``TransformFailed`` saying which part
    was not found, or what the value is where an object was needed.
    """
    if json_key.startswith("/"):
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in json_key[1:].split("/")]
        found, result = _point(value, tokens)
    else:
        found, result = _walk(value, json_key.split("."), 0, set())
    if not found:
        raise failed(name, f"{result.what} (jsonKey {json_key[:128]!r})")
    return result


def _string(value: Any, name: str, json_key: str) -> str:
    if not isinstance(value, str):
        raise failed(name, f"has {_kind(value)} at jsonKey {json_key[:128]!r}, not a string")
    return value


def value_of(text: str | None, binary: str | None, name: str, transform: str | None,
             json_key: str | None) -> Any:
    """The transformed value as a JSON-able object (for JSON answers and group members).

    ``text`` is the parameter's ``Value`` or the secret's ``SecretString``; ``binary`` is a
    secret's base64 ``SecretBinary`` (used when ``text`` is None). ``transform`` is already
    ``effective``. With ``jsonKey``, the key is selected first and ``stringlist`` splits it.
    """
    if json_key is not None:
        value = select(_parse(_text(text, binary, name), name), json_key, name)
        if transform == "stringlist":
            return _string(value, name, json_key).split(",")
        return value
    if transform == "json":
        return _parse(_text(text, binary, name), name)
    if transform == "stringlist":
        return _text(text, binary, name).split(",")
    return _text(text, binary, name)


def single(text: str | None, binary: str | None, name: str, transform: str | None,
           json_key: str | None) -> Rendered:
    """A single read's transformed answer. ``binary`` is a secret's base64 ``SecretBinary``.

    ``binary`` and ``raw`` of a binary secret answer its bytes (Powertools has no such
    transform: its ``binary`` would base64-decode the secret's bytes once more).
    """
    transform = effective(transform, name, group=False)
    if json_key is None and (transform == "binary" or (transform == "raw" and text is None)):
        if text is not None:
            return Rendered(decode_base64(text, name), _OCTETS)
        return Rendered(base64.b64decode(binary or ""), _OCTETS)  # AWS's own encoding
    value = value_of(text, binary, name, transform, json_key)
    if transform == "binary":  # with jsonKey: the selected string, base64-decoded
        return Rendered(decode_base64(_string(value, name, json_key or ""), name), _OCTETS)
    if transform == "raw" and isinstance(value, str):
        return Rendered(value.encode(), "text/plain; charset=utf-8")
    return Rendered(json.dumps(value, separators=(",", ":")).encode(), _JSON)
