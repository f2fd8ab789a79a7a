"""Property tests (issue 20: S3-8, F4): the client's transforms against Powertools' own
``transform_value`` on generated values (JSON, base64 with and without line breaks, binary
secrets, arbitrary text), and the client's ``json_key`` against Powertools' parsed JSON (literal
dotted keys, nested paths, JSON Pointers) and against the daemon's ``jsonKey`` rule, which must
stay the same. Same value, or both an error."""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools.utilities.parameters import base
from hypothesis import given, settings
from hypothesis import strategies as st
from sidecar.core import transform as daemon
from sidecar.core.errors import ApiError

from sidecar_client import InvalidRequest, TransformParameterError
from sidecar_client.transform import json_key_problem, select, transform_value

powertools: Any = base.transform_value  # Powertools' own, untyped here: it is the reference
EXAMPLES = settings(max_examples=400, deadline=None)
WALKS = settings(max_examples=150, deadline=None)  # documents with paths are slow to generate

scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=12) \
    | st.floats(allow_nan=False, allow_infinity=False)


def documents(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(keys, inner, max_size=3), max_leaves=8)


json_documents = documents(st.text(max_size=8))
raw_bytes = st.binary(max_size=200)


@st.composite
def base64_with_whitespace(draw: st.DrawFn) -> str:
    """base64 with line breaks, spaces or tabs put anywhere (what wrapping tools write, and
    worse)."""
    text = base64.b64encode(draw(raw_bytes)).decode()
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\n", "\r\n", " ", "\t"])) + text[at:]
    return text


texts = st.one_of(
    json_documents.map(json.dumps),
    json_documents.map(lambda document: json.dumps(document, indent=2, ensure_ascii=False)),
    raw_bytes.map(lambda data: base64.b64encode(data).decode()),
    raw_bytes.map(lambda data: base64.encodebytes(data).decode()),  # a newline every 76
    raw_bytes.map(lambda data: base64.encodebytes(data).decode().replace("\n", "\r\n")),
    base64_with_whitespace(),
    st.text(alphabet="ABCDabcd0123+/=-_\n \t", max_size=40),  # almost base64
    st.text(max_size=60),
)
# A parameter's Value, a secret's SecretString (text) or SecretBinary (bytes, as boto3 gives).
values = st.one_of(texts, texts.map(lambda text: text.encode("utf-8")), raw_bytes)
names = st.sampled_from(["/app/config", "/app/config.json", "/app/key.binary", "json", "binary",
                         "/app/x.JSON", "/a.json/x", "x.binary.json", "x.json.binary", "cfg.yaml"]
                        ) | st.text(alphabet="ab./jsonbiary", max_size=12)


def outcome(call: Any) -> tuple[str, str]:
    try:
        return "value", repr(call())  # repr: NaN from json.loads("NaN") equals itself
    except Exception:  # Powertools' errors include UnicodeDecodeError for non-UTF-8 bytes
        return "error", ""


@EXAMPLES
@given(name=names, value=values, how=st.sampled_from(["json", "binary", "auto"]))
def test_transforms_are_powertools(name: str, value: str | bytes, how: str) -> None:
    theirs = outcome(lambda: powertools(value, how, raise_on_transform_error=True, key=name))
    try:
        mine = ("value", repr(transform_value(name, value, how)))
    except TransformParameterError:  # only this type
        mine = ("error", "")
    assert mine == theirs
    if mine[0] == "error":  # the group form: None instead of the error
        assert transform_value(name, value, how, raise_on_error=False) is None


@WALKS
@given(st.dictionaries(st.text(alphabet="ab.", min_size=1, max_size=6), json_documents,
                       min_size=1, max_size=5), st.data())
def test_a_literal_key_wins_dots_and_all(document: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(document)))
    parsed = powertools(json.dumps(document), "json")
    if json_key_problem(key) is None:
        assert repr(select(parsed, key, "n")) == repr(parsed[key])
    assert repr(select(parsed, "/" + key.replace("~", "~0").replace("/", "~1"), "n")) \
        == repr(parsed[key])


@st.composite
def walks(draw: st.DrawFn, keys: st.SearchStrategy[str]) -> tuple[Any, list[str], Any]:
    """A document, a path of one or more steps into it, and what the path reaches."""
    document = draw(st.dictionaries(keys, documents(keys), min_size=1, max_size=4))
    node: Any = document
    path: list[str] = []
    while isinstance(node, (dict, list)) and node and (not path or draw(st.booleans())):
        if isinstance(node, dict):
            step = draw(st.sampled_from(sorted(node)))
            path.append(step)
            node = node[step]
        else:
            index = draw(st.integers(0, len(node) - 1))
            path.append(str(index))
            node = node[index]
    return document, path, node


@WALKS
@given(walks(st.text(alphabet="abc01", min_size=1, max_size=3)))
def test_a_dotted_path_walks_nested_keys(walk: tuple[Any, list[str], Any]) -> None:
    document, path, reached = walk
    parsed = powertools(json.dumps(document), "json")
    assert repr(select(parsed, ".".join(path), "n")) == repr(reached)


@WALKS
@given(walks(st.text(alphabet="a./~0", max_size=3)))
def test_a_json_pointer_names_any_key(walk: tuple[Any, list[str], Any]) -> None:
    document, path, reached = walk
    parsed = powertools(json.dumps(document), "json")
    pointer = "".join("/" + step.replace("~", "~0").replace("/", "~1") for step in path)
    assert repr(select(parsed, pointer, "n")) == repr(reached)


json_keys = st.text(alphabet="ab.0/~1", max_size=8)


@st.composite
def documents_and_keys(draw: st.DrawFn) -> tuple[Any, str]:
    """A document, and a key that is often its own structure joined with dots, where a dotted
    key and a nested path can both match (the case the rule must settle the same way)."""
    document, path, _ = draw(walks(st.text(alphabet="ab.", min_size=1, max_size=3)))
    if draw(st.booleans()):
        return document, draw(json_keys)
    return document, ".".join(path)


@WALKS
@given(documents_and_keys())
def test_json_key_is_the_daemons_rule(case: tuple[Any, str]) -> None:
    """The client and the daemon (``sidecar/core/transform.py``) select the same part, or both
    refuse: a malformed key before any read, a missing one as TransformFailed."""
    document, json_key = case
    if daemon.json_key_problem(json_key) is not None:
        try:
            select(document, json_key, "n")
        except InvalidRequest:
            return
        raise AssertionError(f"the daemon refuses {json_key!r}; the client does not")
    try:
        theirs = ("value", repr(daemon.select(document, json_key, "n")))
    except ApiError as exc:
        theirs = ("error", exc.code)
    try:
        mine = ("value", repr(select(document, json_key, "n")))
    except TransformParameterError as exc:
        mine = ("error", exc.code)
    assert mine == theirs
