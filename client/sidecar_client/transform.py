"""Value transforms, applied in this process to the value the daemon serves.

``transform_value`` is Powertools' ``transform_value`` rule for rule (checked against it by a
property test): a ``bytes`` value (a binary secret) is decoded as UTF-8 first; ``json`` is
``json.loads``; ``binary`` is ``base64.b64decode`` without validation, so base64 wrapped at 76
columns (``base64``, PEM and keystore tools) decodes; ``auto`` picks by the part of the name
after its last dot (``json`` or ``binary``), otherwise the value is returned as text. So, as
in Powertools, ``binary`` on a binary secret base64-decodes its bytes once more (the daemon's
``transform=binary`` answers such a secret's bytes as they are).

``select`` is the daemon's ``jsonKey`` rule (``sidecar/core/transform.py``; keep the two the
same): a key that exists wins, dots and all (``spring.datasource.password``), otherwise the
dotted path (``db.host``, digits indexing arrays); a JSON Pointer (``/a.b/c``) names keys a
dotted path cannot. Errors name the item and the transform, never the value.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, NamedTuple, Union

from sidecar_client.errors import InvalidRequest, TransformParameterError

Value = Union[str, bytes, dict, list, None]  # type: ignore[type-arg]
TRANSFORMS = ("json", "binary", "auto")


def failed(name: str, what: str) -> TransformParameterError:
    return TransformParameterError(f"the value of {name[:256]!r} {what}", "TransformFailed", 400)


def method(name: str, transform: str | None) -> str | None:
    """The transform that applies (``json``, ``binary`` or none): Powertools' rule."""
    if transform == "auto":
        suffix = name.rsplit(".", 1)[-1]
        return suffix if suffix in ("json", "binary") else None
    return transform or None


def _apply(name: str, value: str | bytes, how: str | None) -> Any:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise failed(name, "is binary and not UTF-8 text") from None
    if how == "json":
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            raise failed(name, "is not valid JSON") from None
    if how == "binary":
        try:
            return base64.b64decode(value)
        except (binascii.Error, ValueError):
            raise failed(name, "is not base64") from None
    return value


def transform_value(name: str, value: str | bytes | None, transform: str | None,
                    raise_on_error: bool = True) -> Value:
    """``value`` transformed as Powertools would (no transform: unchanged). A value that does not
    transform raises ``TransformParameterError``, or gives ``None`` when not ``raise_on_error``."""
    if not transform or value is None:
        return value
    try:
        transformed: Value = _apply(name, value, method(name, transform))
        return transformed
    except TransformParameterError:
        if raise_on_error:
            raise
        return None


def json_key_problem(json_key: str) -> str | None:
    """Why ``json_key`` is malformed, or None (the daemon's rule). Two forms: dot-separated keys
    (``a.b.0``), and a JSON Pointer (RFC 6901) when it starts with ``/`` (``/a.b/c``; ``~1`` is
    ``/``, ``~0`` is ``~``), the escape for keys a dotted path cannot name."""
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
    """An array index as ``value[int(part)]`` takes it (no negatives; a pointer: no ``01``)."""
    if not part.isascii() or not part.isdigit() or (pointer and part != str(int(part))):
        return None
    return int(part) if int(part) < len(value) else None


class _Miss(NamedTuple):
    depth: int  # parts consumed before the miss: the deepest miss is the one reported
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


def _walk(value: Any, parts: list[str], start: int,
          failed_at: set[tuple[int, int]]) -> tuple[bool, Any]:
    """Dotted form: at each object the longest run of parts that is one of its keys, then
    shorter runs when the rest is not found below it. (found, value or the deepest ``_Miss``);
    ``failed_at`` remembers (node, start) pairs already searched."""
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


def select(document: Any, json_key: str, name: str) -> Any:
    """The part of a parsed JSON document that ``json_key`` names, by the daemon's ``jsonKey``
    rule: a key that exists wins (``spring.datasource.password`` selects that literal key when
    the object has it; ``db.host`` walks into ``db``; digits index arrays), and a JSON Pointer
    (``/a.b/c``) names each key exactly. The error says which part was not found."""
    problem = json_key_problem(json_key)
    if problem is not None:
        raise InvalidRequest(f"json_key {problem}", "InvalidParameterValue", 400)
    if json_key.startswith("/"):
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in json_key[1:].split("/")]
        found, result = _point(document, tokens)
    else:
        found, result = _walk(document, json_key.split("."), 0, set())
    if not found:
        raise failed(name, f"{result.what} (json_key {json_key[:128]!r})")
    return result


def json_field(name: str, value: str | bytes | None, transform: str | None,
               json_key: str) -> Any:
    """``json_key`` out of ``value`` parsed as JSON; with ``binary``, the selected string is then
    base64-decoded (as the daemon's ``jsonKey`` with ``transform=binary``)."""
    if value is None:
        raise failed(name, "is empty")
    selected = select(_apply(name, value, "json"), json_key, name)
    if method(name, transform) != "binary":
        return selected
    if not isinstance(selected, str):
        raise failed(name, f"has {_kind(selected)} at json_key {json_key[:128]!r}, not a string")
    return _apply(name, selected, "binary")
