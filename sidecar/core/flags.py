"""AppConfig feature flags as the AWS AppConfig Agent answers them (README, "Feature flags").

A profile's retrieval-time content is JSON (basic flags: ``{"flag": {"enabled": ..., attr...}}``)
or, once it holds a multi-variant flag, Amazon Ion: each flag an annotated list of variants
(``[rule, content]`` pairs, then the default content) or an annotated content string, content
being the variant's JSON (AWS, "Feature flag samples for AWS AppConfig Agent local development
mode"). A read gets each flag's content for the caller's context: the first variant whose rule
is true, else the default (AWS, "Understanding multi-variant feature flag rules").

Rules follow AWS's operator reference ("Defining rules for multi-variant feature flags"): a
context value (``$key``) meets the other operand as that operand's type; a missing key, or a
value not of that type, makes the comparison false. ``split``'s hash is this module's own (AWS
does not publish its), with AWS's documented properties: consistent per seed, the flag's name
being the seed when none is given.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sidecar.core import ion
from sidecar.core.ion import Annotated, SExp, Symbol

JSON_TYPES = ("application/json",)
ION_FLAGS = "aws.appconfig.featureflags"
_MISSING = object()
Context = Mapping[str, str]


class FlagError(ValueError):
    """The content is not a feature flag profile this module can read (message: why)."""


class Variant:
    """A flag's content for a caller: ``rule`` (None: the default) picks it."""

    __slots__ = ("content", "rule")

    def __init__(self, rule: Any, content: Any) -> None:
        self.rule = rule
        self.content = content


class Flags:
    """A parsed profile: each flag's variants in order (one rule-less variant for a basic
    flag). ``choose(context)`` is the answer's object for every flag, or for ``names``."""

    def __init__(self, flags: dict[str, list[Variant]]) -> None:
        self.flags = flags

    def unknown(self, names: Sequence[str]) -> list[str]:
        return [name for name in names if name not in self.flags]

    def choose(self, context: Context, names: Sequence[str] | None = None) -> dict[str, Any]:
        chosen = {}
        for name in self.flags if names is None else names:
            chosen[name] = next((variant.content for variant in self.flags[name]
                                 if variant.rule is None or _truth(variant.rule, context, name)),
                                None)
        return chosen


def is_ion_flags(content_type: str) -> bool:
    media, _, parameters = content_type.partition(";")
    return media.strip().lower() == "application/ion" and ION_FLAGS in parameters.lower()


def is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media in JSON_TYPES or media.endswith("+json")


def read(body: bytes, content_type: str) -> Flags:
    """The flags of a profile's content; raises ``FlagError``."""
    try:
        text = body.decode("utf-8")
        if is_ion_flags(content_type):
            return _from_ion(ion.parse(text))
        if is_json(content_type):
            document = json.loads(text)
            if isinstance(document, dict):
                return Flags({name: [Variant(None, value)] for name, value in document.items()})
    except (UnicodeDecodeError, ValueError) as exc:
        raise FlagError(f"the configuration could not be read as feature flags "
                        f"({type(exc).__name__})") from None
    raise FlagError("the configuration is not a feature flag profile")


def _from_ion(values: list[Any]) -> Flags:
    flags: dict[str, list[Variant]] = {}
    for value in values:
        if not isinstance(value, Annotated) or not value.annotations:
            raise FlagError("a flag without a name")
        name, body = value.annotations[0], value.value
        if isinstance(body, str):
            flags[name] = [Variant(None, json.loads(body))]
            continue
        if not isinstance(body, list):
            raise FlagError("a flag that is neither a content string nor a list of variants")
        variants = []
        for item in body:
            if isinstance(item, str):
                variants.append(Variant(None, json.loads(item)))
            elif isinstance(item, list) and len(item) == 2 and isinstance(item[1], str):
                variants.append(Variant(item[0], json.loads(item[1])))
            else:
                raise FlagError("a variant that is neither [rule, content] nor a content string")
        flags[name] = variants
    return Flags(flags)


def render(document: Any) -> bytes:
    """The answer's JSON: compact, keys sorted (as the AWS agent writes it)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


# -- rules ------------------------------------------------------------------------------------
def _truth(rule: Any, context: Context, flag: str) -> bool:
    return _evaluate(rule, context, flag) is True


def _evaluate(expression: Any, context: Context, flag: str) -> Any:
    """A rule's value: a bool for an s-expression, the operand itself otherwise."""
    if isinstance(expression, SExp):
        if not expression or not isinstance(expression[0], Symbol):
            return False
        operator = _OPERATORS.get(str(expression[0]))
        return bool(operator(list(expression[1:]), context, flag)) if operator else False
    if isinstance(expression, Symbol) and expression.startswith("$"):
        return context.get(expression[1:], _MISSING)
    if isinstance(expression, Annotated):
        return _evaluate(expression.value, context, flag)
    return expression


def _named(operands: list[Any]) -> dict[str, Any]:
    return {item.annotations[0]: item.value for item in operands
            if isinstance(item, Annotated) and item.annotations}


def _as_type_of(value: Any, model: Any) -> Any:
    """``value`` (a context string) as the type of ``model``, or ``_MISSING``."""
    if not isinstance(value, str) or isinstance(model, str):
        return value
    try:
        if isinstance(model, bool):
            return {"true": True, "false": False}.get(value.strip().lower(), _MISSING)
        if isinstance(model, int | float):
            return float(value)
        if isinstance(model, datetime):
            found = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            return found if found.tzinfo else found.replace(tzinfo=UTC)
    except ValueError:
        return _MISSING
    return _MISSING


def _pair(operands: list[Any], context: Context, flag: str) -> tuple[Any, Any] | None:
    if len(operands) != 2:
        return None
    left, right = (_evaluate(operand, context, flag) for operand in operands)
    left, right = _as_type_of(left, right), _as_type_of(right, left)
    if left is _MISSING or right is _MISSING:
        return None
    if isinstance(left, bool) != isinstance(right, bool):
        return None
    number = (int, float)
    if isinstance(left, number) and isinstance(right, number):
        return left, right
    return (left, right) if type(left) is type(right) else None


def _compare(test: Callable[[Any, Any], bool]) -> Callable[[list[Any], Context, str], bool]:
    def operator(operands: list[Any], context: Context, flag: str) -> bool:
        pair = _pair(operands, context, flag)
        try:
            return pair is not None and test(*pair)
        except TypeError:
            return False
    return operator


def _strings(test: Callable[[str, str], bool]) -> Callable[[list[Any], Context, str], bool]:
    def operator(operands: list[Any], context: Context, flag: str) -> bool:
        pair = _pair(operands, context, flag)
        return pair is not None and isinstance(pair[0], str) and test(*pair)
    return operator


def _in(operands: list[Any], context: Context, flag: str) -> bool:
    if len(operands) != 2:
        return False
    choices = _evaluate(operands[1], context, flag)
    return isinstance(choices, list) and any(
        _equal(operands[0], choice, context, flag) for choice in choices)


def _equal(left: Any, right: Any, context: Context, flag: str) -> bool:
    pair = _pair([left, right], context, flag)
    return pair is not None and pair[0] == pair[1]


@functools.lru_cache(maxsize=256)
def _pattern(source: str) -> re.Pattern[str] | None:
    try:
        return re.compile(source)
    except re.error:
        return None


def _matches(operands: list[Any], context: Context, flag: str) -> bool:
    named = _named(operands)
    value = _evaluate(named.get("in"), context, flag)
    pattern = _pattern(named["pattern"]) if isinstance(named.get("pattern"), str) else None
    return isinstance(value, str) and pattern is not None and pattern.search(value) is not None


def _exists(operands: list[Any], context: Context, flag: str) -> bool:
    key = _named(operands).get("key")
    if key is None and len(operands) == 1 and isinstance(operands[0], Symbol):
        key = operands[0].lstrip("$")  # (exists $country)
    return isinstance(key, str) and key in context


def bucket(seed: str, value: str) -> float:
    """Where ``value`` falls in [0, 100) for ``seed``: the same for the same pair, always."""
    digest = hashlib.sha256(f"{seed}\x00{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def _split(operands: list[Any], context: Context, flag: str) -> bool:
    named = _named(operands)
    value = _evaluate(named.get("by"), context, flag)
    percent, seed = named.get("pct"), named.get("seed", flag)
    if not isinstance(value, str) or not isinstance(percent, int | float) \
            or isinstance(percent, bool) or not isinstance(seed, str):
        return False
    return bucket(seed, value) < percent


_OPERATORS: dict[str, Callable[[list[Any], Context, str], bool]] = {
    "eq": lambda ops, ctx, flag: len(ops) == 2 and _equal(ops[0], ops[1], ctx, flag),
    "gt": _compare(lambda a, b: a > b),
    "gte": _compare(lambda a, b: a >= b),
    "lt": _compare(lambda a, b: a < b),
    "lte": _compare(lambda a, b: a <= b),
    "and": lambda ops, ctx, flag: bool(ops) and all(_truth(op, ctx, flag) for op in ops),
    "or": lambda ops, ctx, flag: any(_truth(op, ctx, flag) for op in ops),
    "not": lambda ops, ctx, flag: len(ops) == 1 and _evaluate(ops[0], ctx, flag) is False,
    "begins_with": _strings(str.startswith),
    "ends_with": _strings(str.endswith),
    "contains": _strings(lambda a, b: b in a),
    "in": _in,
    "matches": _matches,
    "exists": _exists,
    "split": _split,
}
