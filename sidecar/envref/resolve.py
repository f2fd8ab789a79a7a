"""References read through the daemon's HTTP API, and texts resolved with them. Standard
library only.

Reads: plain parameters in ``/systemsmanager/parameters/batch`` (one read without and one with
``withDecryption``), plain secrets in ``/secretsmanager/batch`` (one per JSON key, through the
daemon's ``jsonKey``), a versioned parameter or a secret with a version stage or id by its own
single read; each distinct reference is read once, and these reads run at once (INIT pays for
the slowest, not the sum). A group read that fails as a whole is read again member by member,
so each failure carries its own reason. Reasons are the daemon's error
code and message, which never hold a value (SPEC section 4).
"""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING, Any

from sidecar.envref.client import Client, Unavailable
from sidecar.envref.references import (
    SECRETS,
    SSM,
    SSM_SECURE,
    MalformedReference,
    Piece,
    Reference,
    has_reference,
    references,
    render,
    scan,
    shown,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

MAX_AT_ONCE = 8  # reads in flight together (the daemon's own inbound cap is far above)
MAX_GROUP = 100  # the daemon's bound on a group read's members
MAX_GROUP_QUERY_BYTES = 6 * 1024  # under the daemon's 8 KiB query bound, with room to spare
What = tuple[str, str, str | None, str | None, str | None, str | None]


class Failure:
    """``label`` (a variable's name, or ``template PATH``) could not be resolved because of
    ``reference`` (as written), for ``reason``. (Plain classes here: ``dataclasses`` costs the
    wrapper milliseconds of INIT.)"""

    __slots__ = ("label", "reason", "reference")

    def __init__(self, label: str, reference: str, reason: str) -> None:
        self.label, self.reference, self.reason = label, reference, reason

    def line(self) -> str:
        return f"cannot resolve {shown(self.label)}: {shown(self.reference)}: {shown(self.reason)}"


class Resolved:
    """``texts``: label -> text with its references replaced; ``failures``: what failed."""

    __slots__ = ("failures", "texts")

    def __init__(self, texts: dict[str, str] | None = None,
                 failures: list[Failure] | None = None) -> None:
        self.texts = {} if texts is None else texts
        self.failures = [] if failures is None else failures


def _reason(status: int, body: bytes) -> str:
    try:
        document = json.loads(body)
        return f"{document['__type']}: {document['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status} from the daemon"


class Reader:
    """Reads references through ``client``; ``max_age`` (seconds) is sent as ``maxAge``."""

    def __init__(self, client: Client, max_age: int | None = None) -> None:
        self._client = client
        self._extra = [("maxAge", str(max_age))] if max_age is not None else []
        self.values: dict[What, str] = {}
        self.problems: dict[What, str] = {}

    def read(self, wanted: Iterable[Reference]) -> None:
        """Fill ``values`` and ``problems`` for every reference in ``wanted``."""
        unique = {ref.what: ref for ref in wanted}
        parameters: dict[bool, list[Reference]] = {False: [], True: []}
        secrets: dict[str | None, list[Reference]] = {}
        singles: list[Reference] = []
        for ref in unique.values():
            if ref.service != SECRETS and ref.version is None:
                parameters[ref.service == SSM_SECURE].append(ref)
            elif ref.service == SECRETS and not (ref.version_stage or ref.version_id):
                secrets.setdefault(ref.json_key, []).append(ref)
            else:
                singles.append(ref)
        tasks: list[Callable[[], None]] = []
        for decrypt, group in parameters.items():
            tasks += [partial(self._parameter_batch, chunk, decrypt) for chunk in _chunks(group)]
        for json_key, group in secrets.items():
            tasks += [partial(self._secret_batch, chunk, json_key) for chunk in _chunks(group)]
        tasks += [partial(self._single, ref) for ref in singles]
        gone = _run_together(tasks)
        if gone is not None:
            for what in unique:
                if what not in self.values:
                    self.problems.setdefault(what, gone)

    def _get(self, path: str, query: list[tuple[str, str]]) -> tuple[int, bytes]:
        status, _, body = self._client.get(path, query + self._extra)
        return status, body

    def _parameter_batch(self, chunk: Sequence[Reference], decrypt: bool) -> None:
        query = [("name", ref.name) for ref in chunk]
        status, body = self._get("/systemsmanager/parameters/batch",
                                 query + ([("withDecryption", "true")] if decrypt else []))
        found, invalid = _members(status, body, "Parameters", "InvalidParameters")
        missing = set(invalid)
        if found is None or len(found) + len(invalid) != len(chunk) \
                or not missing <= {ref.name for ref in chunk}:
            for ref in chunk:  # one by one, for each one's own reason
                self._single(ref)
            return
        members = iter(found)
        for ref in chunk:
            if ref.name in missing:
                self.problems[ref.what] = "ParameterNotFound: no such parameter"
            else:
                self._parameter(ref, next(members))

    def _secret_batch(self, chunk: Sequence[Reference], json_key: str | None) -> None:
        query = [("secretId", ref.name) for ref in chunk]
        status, body = self._get("/secretsmanager/batch",
                                 query + ([("jsonKey", json_key)] if json_key else []))
        found, errors = _members(status, body, "SecretValues", "Errors")
        failed = {str(error.get("SecretId")): error for error in errors if isinstance(error, dict)}
        if found is None or len(found) + len(errors) != len(chunk) \
                or not set(failed) <= {ref.name for ref in chunk}:
            for ref in chunk:
                self._single(ref)
            return
        members = iter(found)
        for ref in chunk:
            error = failed.get(ref.name)
            if error is not None:
                self.problems[ref.what] = f"{error.get('ErrorCode')}: {error.get('Message')}"
            else:
                member = next(members)
                self._secret(ref, member.get("SecretString") if isinstance(member, dict) else None)

    def _single(self, ref: Reference) -> None:
        if ref.service in (SSM, SSM_SECURE):
            query = [("name", ref.name)]
            query += [("version", ref.version)] if ref.version else []
            query += [("withDecryption", "true")] if ref.service == SSM_SECURE else []
            status, body = self._get("/systemsmanager/parameters/get", query)
        else:
            query = [("secretId", ref.name)]
            query += [("versionStage", ref.version_stage)] if ref.version_stage else []
            query += [("versionId", ref.version_id)] if ref.version_id else []
            query += [("jsonKey", ref.json_key)] if ref.json_key else []
            status, body = self._get("/secretsmanager/get", query)
        if status != 200:
            self.problems[ref.what] = _reason(status, body)
            return
        try:
            document = json.loads(body)
        except ValueError:
            self.problems[ref.what] = "the daemon's answer is not JSON"
            return
        if ref.service != SECRETS:
            self._parameter(ref, document.get("Parameter") if isinstance(document, dict) else None)
        elif ref.json_key:
            self._secret(ref, document)  # the selected field, as JSON
        else:
            self._secret(ref, document.get("SecretString") if isinstance(document, dict) else None)

    def _parameter(self, ref: Reference, member: Any) -> None:
        if not isinstance(member, dict) or not isinstance(member.get("Value"), str):
            self.problems[ref.what] = "the daemon's answer has no Value"
        elif ref.service == SSM and member.get("Type") == "SecureString":
            self.problems[ref.what] = ("is a SecureString: read it with {{resolve:ssm-secure:"
                                       "...}} (ssm reads String and StringList parameters)")
        else:
            self._value(ref, member["Value"])

    def _secret(self, ref: Reference, value: Any) -> None:
        if ref.json_key is None and not isinstance(value, str):
            self.problems[ref.what] = ("is a binary secret (SecretBinary): references read "
                                       "SecretString only")
        else:
            self._value(ref, value if isinstance(value, str)
                        else json.dumps(value, separators=(",", ":")))

    def _value(self, ref: Reference, value: str) -> None:
        if "\0" in value:
            self.problems[ref.what] = "holds a NUL character, which no environment can carry"
        else:
            self.values[ref.what] = value


def _run_together(tasks: list[Callable[[], None]]) -> str | None:
    """Run ``tasks`` at once, a thread each (the reads are independent, and each waits for a
    round trip to AWS): INIT pays for the slowest, not the sum. Returns why the daemon was
    unavailable, if it was for any of them. Every task is bounded by the client's deadline."""
    gone: list[str] = []

    def guarded(task: Callable[[], None]) -> None:
        try:
            task()
        except Unavailable as exc:
            gone.append(str(exc))

    if len(tasks) == 1:
        guarded(tasks[0])
    else:
        import threading

        slots = threading.BoundedSemaphore(MAX_AT_ONCE)

        def bounded(task: Callable[[], None]) -> None:
            with slots:
                guarded(task)

        threads = [threading.Thread(target=bounded, args=(task,), daemon=True) for task in tasks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return gone[0] if gone else None


def _members(status: int, body: bytes, listed: str, refused: str
             ) -> tuple[list[Any] | None, list[Any]]:
    """A group answer's two lists, or None when the read failed as a whole."""
    if status != 200:
        return None, []
    try:
        document = json.loads(body)
        found, other = document[listed], document[refused]
    except (ValueError, KeyError, TypeError):
        return None, []
    if not isinstance(found, list) or not isinstance(other, list):
        return None, []
    return found, other


def _chunks(group: Sequence[Reference]) -> Iterator[list[Reference]]:
    """``group`` in pieces the daemon takes: at most ``MAX_GROUP`` members and
    ``MAX_GROUP_QUERY_BYTES`` of names."""
    chunk: list[Reference] = []
    size = 0
    for ref in group:
        length = len(ref.name.encode()) * 3 + 16  # percent-encoded at worst, and its key
        if chunk and (len(chunk) == MAX_GROUP or size + length > MAX_GROUP_QUERY_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(ref)
        size += length
    if chunk:
        yield chunk


def resolve_texts(texts: Mapping[str, str], connect: Callable[[], Client],
                  max_age: int | None = None) -> Resolved:
    """Every text of ``texts`` that holds a reference, resolved (``texts`` in the answer), or
    one ``Failure`` per reference it could not resolve. ``connect`` (called only when there is
    a reference) gives a client whose daemon answers, or raises ``Unavailable``."""
    result = Resolved()
    scanned: dict[str, list[Piece]] = {}
    for label, text in texts.items():
        if not has_reference(text):
            continue
        try:
            scanned[label] = scan(text)
        except MalformedReference as exc:
            result.failures.append(Failure(label, exc.text, str(exc)))
    wanted = [ref for pieces in scanned.values() for ref in references(pieces)]
    if not wanted:
        return result
    problems: dict[What, str]
    try:
        client = connect()
    except Unavailable as exc:
        values, problems = {}, {ref.what: str(exc) for ref in wanted}
    else:
        try:
            reader = Reader(client, max_age)
            reader.read(wanted)
            values, problems = reader.values, reader.problems
        finally:
            client.close()
    for label, pieces in scanned.items():
        refs = references(pieces)
        bad = [ref for ref in dict.fromkeys(refs) if ref.what in problems]
        result.failures.extend(Failure(label, ref.text, problems[ref.what]) for ref in bad)
        if not bad:
            result.texts[label] = render(pieces, {ref: values[ref.what] for ref in refs})
    return result
