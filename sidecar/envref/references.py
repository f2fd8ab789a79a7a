"""CloudFormation's dynamic references, parsed. Pure functions, standard library only.

Forms (AWS CloudFormation User Guide, "Get a plaintext value from Systems Manager Parameter
Store", "... secure string ...", "Get a secret or secret value from Secrets Manager")::

    {{resolve:ssm:NAME[:VERSION]}}
    {{resolve:ssm-secure:NAME[:VERSION]}}
    {{resolve:secretsmanager:ID[:SecretString[:JSON_KEY[:VERSION_STAGE[:VERSION_ID]]]]}}

NAME is a parameter name or ARN, ID a secret name or ARN (complete or partial). An ARN's own
colons belong to it: a field starting with ``arn:`` takes the ARN's six fields (an SSM ARN,
``arn:P:ssm:R:A:parameter/NAME``) or seven (a secret's, ``arn:P:secretsmanager:R:A:secret:NAME``)
with it. Names contain no colon, so nothing else is ambiguous. Empty fields mean the default, as
CloudFormation reads them (``{{resolve:secretsmanager:s::key}}``, and the whole secret in
``{{resolve:secretsmanager:s::::}}``); VERSION is a number; VERSION_STAGE and VERSION_ID are not
both given.

Beyond CloudFormation: whitespace right inside the braces is allowed (``{{ resolve:ssm:/a }}``):
CloudFormation leaves such text alone at deploy time (cfn-lint's W1053), so templates can hand a
reference to the function instead of resolving it into the function's configuration.

Everything from ``{{resolve:`` to the next ``}}`` is a reference: a malformed one raises
``MalformedReference`` (never passed on as text). Text without ``{{resolve:`` is untouched.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

SSM = "ssm"
SSM_SECURE = "ssm-secure"
SECRETS = "secretsmanager"
SERVICES = (SSM, SSM_SECURE, SECRETS)
SECRET_STRING = "SecretString"
_OPEN = re.compile(r"\{\{\s*resolve:")
_CLOSE = "}}"
_SSM_ARN_FIELDS = 6  # arn:partition:ssm:region:account:parameter/NAME
_SECRET_ARN_FIELDS = 7  # arn:partition:secretsmanager:region:account:secret:NAME
_SHOWN_CHARS = 300  # a reference quoted in a message is cut here


class MalformedReference(ValueError):
    """A ``{{resolve:...}}`` that does not follow the syntax; ``str()`` says what is wrong."""

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(problem)
        self.text = text


class Reference:
    """One reference. ``text`` is exactly as written (for messages: it names, never holds, a
    value); the other fields are its parts, None where the default applies. Immutable; equal
    when written alike. (A plain class: ``dataclasses`` costs the wrapper milliseconds.)"""

    __slots__ = ("json_key", "name", "service", "text", "version", "version_id",
                 "version_stage")

    def __init__(self, text: str, service: str, name: str, version: str | None = None,
                 json_key: str | None = None, version_stage: str | None = None,
                 version_id: str | None = None) -> None:
        self.text, self.service, self.name, self.version = text, service, name, version
        self.json_key, self.version_stage, self.version_id = json_key, version_stage, version_id

    @property
    def what(self) -> tuple[str, str, str | None, str | None, str | None, str | None]:
        """What is read: two references with the same ``what`` have the same value."""
        return (self.service, self.name, self.version, self.json_key, self.version_stage,
                self.version_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reference) and (self.text, self.what) == (other.text, other.what)

    def __hash__(self) -> int:
        return hash((self.text, self.what))

    def __repr__(self) -> str:
        return f"Reference({self.text!r})"


Piece = str | Reference


def shown(text: str) -> str:
    """``text`` fit for a one-line message: printable, and cut at ``_SHOWN_CHARS``."""
    clean = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text[:_SHOWN_CHARS])
    return clean + ("..." if len(text) > _SHOWN_CHARS else "")


def has_reference(text: str) -> bool:
    return _OPEN.search(text) is not None


def scan(text: str) -> list[Piece]:
    """``text`` as literal strings and references, in order (literal strings never empty).

    Raises ``MalformedReference`` for the first reference that does not parse."""
    pieces: list[Piece] = []
    position = 0
    for found in _OPEN.finditer(text):
        if found.start() < position:  # inside a reference already taken
            continue
        end = text.find(_CLOSE, found.end())
        if end < 0:
            raise MalformedReference(text[found.start():], "has no closing '}}'")
        if found.start() > position:
            pieces.append(text[position:found.start()])
        written = text[found.start():end + len(_CLOSE)]
        pieces.append(parse(text[found.end():end].strip(), written))
        position = end + len(_CLOSE)
    if position < len(text):
        pieces.append(text[position:])
    return pieces


def references(pieces: Sequence[Piece]) -> list[Reference]:
    return [piece for piece in pieces if isinstance(piece, Reference)]


def render(pieces: Sequence[Piece], values: Mapping[Reference, str]) -> str:
    """The text with every reference replaced by its value (``values`` has them all)."""
    return "".join(piece if isinstance(piece, str) else values[piece] for piece in pieces)


def parse(body: str, text: str) -> Reference:
    """The reference whose part after ``resolve:`` is ``body``; ``text`` is all of it."""
    service, colon, key = body.partition(":")
    if service not in SERVICES:
        raise MalformedReference(text, f"names the service {service[:40]!r}: use one of "
                                       + ", ".join(SERVICES))
    if not colon or not key:
        raise MalformedReference(text, f"has no {'ID' if service == SECRETS else 'NAME'}")
    if service == SECRETS:
        return _secret(key, text)
    return _parameter(service, key, text)


def _split_arn(key: str, service: str, text: str) -> tuple[str, list[str]]:
    """The name or ARN at the start of ``key``, and the fields after it."""
    fields = key.split(":")
    if fields[0] != "arn":
        return fields[0], fields[1:]
    if service == SECRETS:
        size, shape = _SECRET_ARN_FIELDS, "arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME"
        valid = len(fields) >= size and fields[2] == SECRETS and fields[5] == "secret" \
            and bool(fields[6])
    else:
        size, shape = _SSM_ARN_FIELDS, "arn:PARTITION:ssm:REGION:ACCOUNT:parameter/NAME"
        valid = len(fields) >= size and fields[2] == "ssm" \
            and fields[5].startswith("parameter/") and len(fields[5]) > len("parameter/")
    if not valid:
        raise MalformedReference(text, f"has an ARN not of the form {shape}")
    return ":".join(fields[:size]), fields[size:]


def _parameter(service: str, key: str, text: str) -> Reference:
    name, rest = _split_arn(key, service, text)
    if not name:
        raise MalformedReference(text, "has no NAME")
    if len(rest) > 1:
        raise MalformedReference(text, f"has a field too many ({service}:NAME[:VERSION])")
    version = rest[0] if rest and rest[0] else None
    if version is not None and not (version.isascii() and version.isdigit()):
        raise MalformedReference(text, f"has the VERSION {version[:40]!r}, not a number")
    return Reference(text, service, name, version=version)


def _secret(key: str, text: str) -> Reference:
    secret_id, rest = _split_arn(key, SECRETS, text)
    if not secret_id:
        raise MalformedReference(text, "has no ID")
    if len(rest) > 4:
        raise MalformedReference(text, "has a field too many (secretsmanager:ID[:SecretString"
                                       "[:JSON_KEY[:VERSION_STAGE[:VERSION_ID]]]])")
    kind, json_key, stage, version_id = ([*rest, "", "", "", ""])[:4]
    if kind not in ("", SECRET_STRING):
        raise MalformedReference(text, f"has {kind[:40]!r} where only 'SecretString' (or "
                                       "nothing) may be")
    if stage and version_id:
        raise MalformedReference(text, "gives both VERSION_STAGE and VERSION_ID: give one")
    return Reference(text, SECRETS, secret_id, json_key=json_key or None,
                     version_stage=stage or None, version_id=version_id or None)
