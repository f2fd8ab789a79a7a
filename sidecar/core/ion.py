"""Amazon Ion text, the part AppConfig's multi-variant feature flags use (README, "Feature flags").

AppConfig delivers a feature flag profile holding a multi-variant flag as Ion text: a stream of
annotated values, each flag an annotated list of variants (``[rule, content]`` pairs and a
default content string) or an annotated string. This reads the Ion text grammar's values
(https://amazon-ion.github.io/ion-docs/docs/spec.html): null, booleans, integers, floats and
decimals (as ``float``), timestamps (``datetime``), strings (long strings concatenated), symbols,
lists, s-expressions and structs, with annotations and comments. Blobs and clobs are refused.

``parse(text)`` returns the top-level values; raises ``IonError`` (never holding the text).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, NamedTuple

MAX_DEPTH = 64


class IonError(ValueError):
    """The text is not Ion this reader understands; the message says where, not what."""


class Symbol(str):
    """An Ion symbol (``$userId``, ``eq``), as distinct from a string."""

    __slots__ = ()


class SExp(tuple[Any, ...]):
    """An Ion s-expression: ``(op arg ...)``."""

    __slots__ = ()


class Annotated(NamedTuple):
    annotations: tuple[str, ...]
    value: Any


_SPACE = re.compile(r"(?:\s+|//[^\n]*|/\*.*?\*/)*", re.S)
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_OPERATOR = re.compile(r"[!#%&*+\-./;<=>?@^`|~]+")
_NUMBER = re.compile(r"-?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|(?:0|[1-9][0-9_]*)"
                     r"(?:\.[0-9_]*)?(?:[eEdD][+-]?[0-9]+)?)(?=[\s,\]\)\}/]|$)")
_TIMESTAMP = re.compile(r"\d{4}(?:-\d{2}(?:-\d{2})?)?T(?:\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
                        r"(?:Z|[+-]\d{2}:\d{2}))?|\d{4}-\d{2}(?:-\d{2})?")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "a": "\a", "b": "\b", "f": "\f",
            "v": "\v", "\\": "\\", "/": "/", "?": "?", "'": "'", '"': '"', "\n": ""}


def parse(text: str) -> list[Any]:
    """Every top-level value of ``text``, in order."""
    return _Reader(text).stream()


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def fail(self, what: str) -> IonError:
        return IonError(f"{what} at character {self.at}")

    def skip(self) -> None:
        self.at = _SPACE.match(self.text, self.at).end()  # type: ignore[union-attr]

    def stream(self) -> list[Any]:
        values = []
        self.skip()
        while self.at < len(self.text):
            values.append(self.value(0, sexp=False))
            self.skip()
        return values

    def value(self, depth: int, sexp: bool) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail("nesting too deep")
        annotations: list[str] = []
        while True:
            self.skip()
            start = self.at
            symbol = self.symbol_token()
            if symbol is not None:
                self.skip()
                if self.text.startswith("::", self.at):
                    self.at += 2
                    annotations.append(symbol)
                    continue
                self.at = start
            break
        found = self.bare(depth, sexp)
        return Annotated(tuple(annotations), found) if annotations else found

    def symbol_token(self) -> str | None:
        """A quoted or identifier symbol here (not keywords), or None; moves past it."""
        if self.text.startswith("'", self.at) and not self.text.startswith("'''", self.at):
            return self.quoted("'")
        match = _IDENT.match(self.text, self.at)
        if match and match.group() not in ("true", "false", "null", "nan"):
            self.at = match.end()
            return match.group()
        return None

    def bare(self, depth: int, sexp: bool) -> Any:
        text, at = self.text, self.at
        if at >= len(text):
            raise self.fail("a value was expected")
        char = text[at]
        if char == "[":
            return self.sequence("]", depth, sexp=False)
        if char == "(":
            return SExp(self.sequence(")", depth, sexp=True))
        if char == "{":
            if text.startswith("{{", at):
                raise self.fail("blobs and clobs are not supported")
            return self.struct(depth)
        if char == '"':
            return self.quoted('"')
        if text.startswith("'''", at):
            return self.long_strings()
        if char == "'":
            return Symbol(self.quoted("'"))
        for word, meaning in (("true", True), ("false", False)):
            if text.startswith(word, at) and not _IDENT.match(text, at + len(word)):
                self.at += len(word)
                return meaning
        if text.startswith("null", at) and not _IDENT.match(text, at + 4):
            self.at = at + 4
            if text.startswith(".", self.at):  # a typed null: null.string, null.int, ...
                typed = _IDENT.match(text, self.at + 1)
                self.at = typed.end() if typed else self.at + 1
            return None
        stamp = _TIMESTAMP.match(text, at)
        if stamp:
            self.at = stamp.end()
            return _timestamp(stamp.group())
        number = _NUMBER.match(text, at)
        if number:
            self.at = number.end()
            return _number(number.group())
        match = _IDENT.match(text, at) or (_OPERATOR.match(text, at) if sexp else None)
        if match:
            self.at = match.end()
            return Symbol(match.group())
        raise self.fail("unexpected character")

    def sequence(self, close: str, depth: int, sexp: bool) -> list[Any]:
        self.at += 1
        items: list[Any] = []
        while True:
            self.skip()
            if self.text.startswith(close, self.at):
                self.at += 1
                return items
            items.append(self.value(depth + 1, sexp))
            self.skip()
            if not sexp and self.text.startswith(",", self.at):
                self.at += 1
            elif not sexp and not self.text.startswith(close, self.at):
                raise self.fail(f"',' or '{close}' expected")

    def struct(self, depth: int) -> dict[str, Any]:
        self.at += 1
        fields: dict[str, Any] = {}
        while True:
            self.skip()
            if self.text.startswith("}", self.at):
                self.at += 1
                return fields
            name = self.quoted('"') if self.text.startswith('"', self.at) else self.symbol_token()
            self.skip()
            if name is None or not self.text.startswith(":", self.at):
                raise self.fail("a field name and ':' expected")
            self.at += 1
            fields[name] = self.value(depth + 1, sexp=False)
            self.skip()
            if self.text.startswith(",", self.at):
                self.at += 1
            elif not self.text.startswith("}", self.at):
                raise self.fail("',' or '}' expected")

    def long_strings(self) -> str:
        parts = []
        while self.text.startswith("'''", self.at):
            parts.append(self.quoted("'''"))
            start = self.at
            self.skip()
            if not self.text.startswith("'''", self.at):
                self.at = start
        return "".join(parts)

    def quoted(self, quote: str) -> str:
        text = self.text
        self.at += len(quote)
        out: list[str] = []
        while True:
            end = text.find(quote, self.at)
            slash = text.find("\\", self.at)
            if end < 0:
                raise self.fail("unterminated string")
            if 0 <= slash < end:
                out.append(text[self.at:slash])
                self.at = slash + 1
                out.append(self.escape())
                continue
            out.append(text[self.at:end])
            self.at = end + len(quote)
            return "".join(out)

    def escape(self) -> str:
        char = self.text[self.at:self.at + 1]
        self.at += 1
        if char in _ESCAPES:
            return _ESCAPES[char]
        width = {"x": 2, "u": 4, "U": 8}.get(char)
        digits = self.text[self.at:self.at + width] if width else ""
        if not width or len(digits) != width:
            raise self.fail("bad escape")
        self.at += width
        try:
            return chr(int(digits, 16))
        except ValueError:
            raise self.fail("bad escape") from None


def _number(token: str) -> int | float:
    token = token.replace("_", "")
    lowered = token.lower()
    if lowered.lstrip("-").startswith(("0x", "0b")):
        sign = -1 if lowered.startswith("-") else 1
        body = lowered.lstrip("-")
        return sign * int(body[2:], 16 if body[1] == "x" else 2)
    if any(mark in lowered for mark in ".ed"):
        return float(lowered.replace("d", "e"))
    return int(token)


def _timestamp(token: str) -> datetime:
    """An Ion timestamp; a date or coarser is midnight UTC of its first day (``2024-01``, as
    AWS's rule examples write a month, is read too)."""
    body = token.rstrip("T")
    if "T" not in body:
        parts = [int(part) for part in body.split("-")] + [1, 1]
        return datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
    found = datetime.fromisoformat(body.replace("Z", "+00:00"))
    return found if found.tzinfo else found.replace(tzinfo=UTC)
