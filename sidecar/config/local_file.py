"""The local mode's file (``--local FILE``, README "Local mode (no AWS)"): the parameters,
secrets and S3 objects to serve with no AWS at all, read and checked into ``local_data``.

TOML (Python's ``tomllib``), or JSON when the name ends in ``.json``. Each of the three tables
maps a name to its value (a string) or to a table of fields (``local_entries``). Every problem
raises ``LocalFileError``: one line naming the file, the entry and what is wrong, never a value.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from datetime import UTC, datetime
from typing import Any

from sidecar.config.local_data import LocalData, LocalFileError, LocalObject, Parameter, Stat
from sidecar.config.local_entries import (
    Problem,
    Unreadable,
    located,
    parameter,
    s3_object,
    secret,
)

MAX_FILE_BYTES = 100 * 1024 * 1024  # the file itself, and each file it names (as S3 objects)


def load(path: str) -> LocalData:
    """Read and check the file at ``path`` and the files it names; raises ``LocalFileError``
    (with the files read or tried, for the caller to watch)."""
    reads = _Reads()
    try:
        return _load(path, reads)
    except LocalFileError as exc:
        exc.files = tuple(reads.paths)
        raise


def _load(path: str, reads: _Reads) -> LocalData:
    try:
        raw, mtime = reads.read(path)
    except Unreadable as exc:
        raise LocalFileError(f"local file {path}: {exc}") from None
    is_json = path.lower().endswith(".json")
    try:
        document = json.loads(raw) if is_json else tomllib.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:  # its msg never quotes the text
        raise LocalFileError(f"local file {path}: not valid JSON: {exc.msg} (at line "
                             f"{exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise LocalFileError(f"local file {path}: not UTF-8 text (at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib quotes an offending character; a character of a value is still a value.
        message = re.sub(r"(character) '.*?' \(", r"\1 (", str(exc))
        raise LocalFileError(f"local file {path}: not valid TOML: {message}") from None
    try:
        data = _parse(document, os.path.dirname(os.path.abspath(path)), mtime, reads)
    except Problem as exc:
        raise LocalFileError(f"local file {path}: {exc.where}: {exc.what}") from None
    return data._replace(files=tuple(reads.paths), signature=tuple(reads.stats))


class _Reads:
    """The files read (or tried) for one load, and their ``Stat``s."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.stats: list[Stat] = []

    def read(self, path: str) -> tuple[bytes, datetime]:
        """The bytes (bounded) and modification time of ``path``; raises ``_Unreadable``. The
        ``Stat`` is taken before the bytes are read, so an edit meanwhile shows at the next
        check."""
        self.paths.append(path)
        try:
            with open(path, "rb") as handle:
                st = os.fstat(handle.fileno())
                self.stats.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
                raw = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise Unreadable(f"{path} cannot be read ({exc.strerror or type(exc).__name__})") \
                from None
        if len(raw) > MAX_FILE_BYTES:
            raise Unreadable(f"{path} is over {MAX_FILE_BYTES} bytes")
        return raw, datetime.fromtimestamp(st.st_mtime, UTC)


def _parse(document: Any, folder: str, mtime: datetime, reads: _Reads) -> LocalData:
    if not isinstance(document, dict):
        raise Problem("the top level", "must be a table of parameters, secrets and s3")
    unknown = sorted(set(document) - {"parameters", "secrets", "s3"})
    if unknown:
        raise Problem("the top level", f"unknown table {unknown[0]!r} (expected parameters, "
                     "secrets or s3)")
    parameters: dict[str, Parameter] = {}
    for name, entry in _section(document, "parameters").items():
        identity = name.lstrip("/")  # AWS's: "/a" and "a" are one parameter
        if identity in parameters:
            raise Problem(located("parameters", name), f"names the same parameter as "
                         f"{parameters[identity].name!r}")
        parameters[identity] = parameter(name, entry, mtime)
    secrets = {name: secret(name, entry, mtime)
               for name, entry in _section(document, "secrets").items()}
    objects: dict[tuple[str, str], LocalObject] = {}
    for spec, entry in _section(document, "s3").items():
        bucket, _, key = spec.partition("/")
        objects[(bucket, key)] = s3_object(spec, entry, mtime, folder, reads.read)
    return LocalData(parameters, secrets, objects, frozenset(b for b, _ in objects), (), ())


def _section(document: dict[str, Any], name: str) -> dict[str, Any]:
    section = document.get(name, {})
    if not isinstance(section, dict):
        raise Problem(name, "must be a table of entries")
    return section


