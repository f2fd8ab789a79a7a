"""The daemon's transforms against Powertools' own (issue 20, review S3-8, field F4): the same
value, or both an error. Generated values go through the pure functions of
``sidecar/core/transform.py`` and Powertools' ``transform_value`` / ``get_transform_method``;
a handful of fixed values go over HTTP to the daemon and through Powertools' providers (both
reading the same moto). ``jsonKey`` has no Powertools twin: it is compared with Python indexing
of Powertools' ``json`` result, the way a Powertools user selects a key."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import pytest
from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider
from aws_lambda_powertools.utilities.parameters.base import get_transform_method, transform_value
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.core import transform
from sidecar.core.errors import ApiError
from tests.conftest import Aws
from tests.support.process import Daemon

BOUNDED = settings(max_examples=150, deadline=None, database=None)
How = Literal["json", "binary", "auto"]  # Powertools' TransformOptions
HOWS: tuple[How, ...] = ("json", "binary", "auto")
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)


def outcome(call: Callable[[], Any]) -> tuple[bool, Any]:
    """(True, value) or (False, None): an ``ApiError`` must be TransformFailed, and Powertools
    raises more than its own error type (``UnicodeDecodeError`` before its try block)."""
    try:
        return True, call()
    except ApiError as error:
        assert error.code == "TransformFailed", error.message
        return False, None
    except Exception:
        return False, None


def same(daemon: tuple[bool, Any], powertools: tuple[bool, Any]) -> None:
    assert daemon[0] == powertools[0], (daemon, powertools)
    if isinstance(daemon[1], bytes):
        assert daemon[1] == powertools[1]
    else:  # NaN and Infinity (json.loads accepts them) compare as text
        assert json.dumps(daemon[1]) == json.dumps(powertools[1])


@BOUNDED
@given(st.one_of(json_values.map(json.dumps), json_values.map(lambda v: json.dumps(v, indent=1)),
                 st.text(max_size=30)))
def test_json_as_powertools(text: str) -> None:
    powertools = outcome(lambda: transform_value(text, "json"))
    same(outcome(lambda: transform.value_of(text, None, "n", "json", None)), powertools)
    body = outcome(lambda: transform.single(text, None, "n", "json", None).body)
    same((body[0], json.loads(body[1]) if body[0] else None), powertools)


def wrapped(data: bytes, how: str) -> str:
    if how == "flat":
        return base64.b64encode(data).decode()
    if how == "crlf":
        return base64.encodebytes(data).decode().replace("\n", "\r\n")
    return base64.encodebytes(data).decode()  # a line break every 76 characters


@BOUNDED
@given(st.one_of(
    st.tuples(st.binary(max_size=200), st.sampled_from(["flat", "lines", "crlf"]))
    .map(lambda pair: wrapped(*pair)),
    st.text(B64 + "\n\r\t !-_,é", max_size=40),
    st.text(max_size=20),
))
def test_base64_as_powertools(text: str) -> None:
    same(outcome(lambda: transform.single(text, None, "n", "binary", None).body),
         outcome(lambda: transform_value(text, "binary")))


@BOUNDED
@given(st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                 json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
                 st.binary(max_size=40)))
def test_binary_secrets_as_powertools(secret: bytes) -> None:
    """A binary secret: the daemon holds AWS's base64 ``SecretBinary``; Powertools the bytes."""
    field = base64.b64encode(secret).decode()
    same(outcome(lambda: transform.value_of(None, field, "s", "json", None)),
         outcome(lambda: transform_value(secret, "json")))


@BOUNDED
@given(st.one_of(st.text("ab/.jsonbiary", max_size=14),
                 st.sampled_from(["json", "binary", "a.json", "/a/b.binary", "/a/json", "x.JSON",
                                  "a.json.txt", ".json", "json.", "a.b.binary"])))
def test_auto_rule_as_powertools(name: str) -> None:
    method = get_transform_method(name, "auto")
    expected = {json.loads: "json", base64.b64decode: "binary"}.get(method)
    assert transform.effective("auto", name, group=False) == (expected or "raw")
    assert transform.effective("auto", name, group=True) == ("json" if expected == "json"
                                                             else None)


def reachable(value: Any, parts: list[str]) -> list[Any]:
    """Every value some split of ``parts`` into dotted keys reaches by Python indexing."""
    if not parts:
        return [value]
    found: list[Any] = []
    for end in range(1, len(parts) + 1):
        key = ".".join(parts[:end])
        if isinstance(value, dict) and key in value:
            found += reachable(value[key], parts[end:])
    if isinstance(value, list) and parts[0].isascii() and parts[0].isdigit() \
            and int(parts[0]) < len(value):
        found += reachable(value[int(parts[0])], parts[1:])
    return found


dotted_keys = st.text("ab.", min_size=1, max_size=3)
documents = st.recursive(
    st.integers(0, 9) | st.text("xyz", max_size=2),
    lambda inner: st.dictionaries(dotted_keys, inner, min_size=1, max_size=4)
    | st.lists(inner, min_size=1, max_size=3),
    max_leaves=10,
)


@st.composite
def document_and_path(draw: st.DrawFn) -> tuple[Any, list[str]]:
    """A document and a path of keys that exists in it (Python indexing), drawn by walking."""
    document = draw(st.dictionaries(dotted_keys, documents, min_size=1, max_size=4))
    path: list[str] = []
    node: Any = document
    while not path or (isinstance(node, dict | list) and draw(st.booleans())):
        if isinstance(node, dict):
            key = draw(st.sampled_from(sorted(node)))
            path.append(key)
            node = node[key]
        else:
            index = draw(st.integers(0, len(node) - 1))
            path.append(str(index))
            node = node[index]
    return document, path


def pointer(path: list[str]) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)


@BOUNDED
@given(document_and_path(), dotted_keys)
def test_dotted_and_nested_keys_as_python_indexing(case: tuple[Any, list[str]],
                                                   other: str) -> None:
    document, path = case
    text = json.dumps(document)
    parsed: Any = transform_value(text, "json")  # Powertools' value, indexed as its users do
    expected = parsed
    for part in path:
        expected = expected[int(part) if isinstance(expected, list) else part]
    # A JSON Pointer names the path exactly.
    assert transform.value_of(text, None, "n", None, pointer(path)) == expected
    # A dotted key: a value some reading of the dots reaches, never "missing" when one exists.
    for json_key in (".".join(path), other):
        if transform.json_key_problem(json_key) is not None:
            continue  # an empty part between dots: refused as a 400 before any call
        candidates = reachable(parsed, json_key.split("."))
        daemon = outcome(partial(transform.value_of, text, None, "n", None, json_key))
        assert daemon[0] == bool(candidates), (json_key, candidates)
        if daemon[0]:
            assert daemon[1] in candidates
        if isinstance(parsed, dict) and json_key in parsed:
            assert daemon[1] == parsed[json_key]  # the literal key wins


# Over HTTP: the daemon and Powertools' providers reading the same values from moto.

DOTTED = {"spring.datasource.password": "pw", "db": {"host": "h1"}, "n": [1, 2]}


@pytest.fixture(scope="module")
def stored(aws: Aws) -> str:
    prefix = "tp" + os.urandom(6).hex()
    data = bytes(range(200))
    values = {"pem.binary": base64.encodebytes(data).decode(),
              "flat.binary": base64.b64encode(data).decode(),
              "cfg.json": json.dumps(DOTTED), "indented.json": json.dumps(DOTTED, indent=2),
              "json": '{"bare": true}', "text": "x,y,z"}
    for name, value in values.items():
        aws.ssm.put_parameter(Name=f"/{prefix}/{name}", Type="String", Value=value)
    aws.sm.create_secret(Name=f"{prefix}/bin.json", SecretBinary=json.dumps(DOTTED).encode())
    aws.sm.create_secret(Name=f"{prefix}/str", SecretString=json.dumps(DOTTED))
    return prefix


def answer(response: Any, how: str) -> tuple[bool, Any]:
    if response.status_code != 200:
        assert response.json()["__type"] == "TransformFailed", response.text
        return False, None
    return True, response.content if how == "binary" else response.json()


@pytest.mark.parametrize("name", ["pem.binary", "flat.binary", "cfg.json", "indented.json",
                                  "text"])
@pytest.mark.parametrize("how", HOWS)
def test_parameters_over_http_as_powertools(shared_daemon: Daemon, aws: Aws, stored: str,
                                            name: str, how: How) -> None:
    full = f"/{stored}/{name}"
    powertools = outcome(lambda: SSMProvider(boto3_client=aws.ssm).get(full, transform=how))
    daemon = shared_daemon.param(full, transform=how)
    if how == "auto" and powertools[0] and isinstance(powertools[1], str):
        assert daemon.status_code == 200 and daemon.text == powertools[1]  # auto: raw text
        return
    kind = "binary" if isinstance(powertools[1], bytes) or how == "binary" else "json"
    same(answer(daemon, kind), powertools)


def test_path_auto_over_http_as_powertools(shared_daemon: Daemon, aws: Aws,
                                           stored: str) -> None:
    powertools = SSMProvider(boto3_client=aws.ssm).get_multiple(f"/{stored}", transform="auto")
    body = shared_daemon.get("/systemsmanager/parameters/path",
                             params={"path": f"/{stored}", "transform": "auto"}).json()
    daemon = {p["Name"].rsplit("/", 1)[-1]: p["Value"] for p in body["Parameters"]}
    assert set(daemon) == set(powertools)
    for name, value in daemon.items():
        if name.endswith(".binary"):  # a group answer is JSON: the daemon leaves base64 as is
            assert base64.b64decode(value) == powertools[name]
        else:
            assert value == powertools[name], name
    assert daemon["json"] == {"bare": True}  # Powertools' auto parses a relative name "json"


@pytest.mark.parametrize("secret", ["bin.json", "str"])
def test_secrets_over_http_as_powertools(shared_daemon: Daemon, aws: Aws, stored: str,
                                         secret: str) -> None:
    secret_id = f"{stored}/{secret}"
    for how in HOWS[::2]:  # json and auto
        provider = SecretsProvider(boto3_client=aws.sm)
        powertools = outcome(partial(provider.get, secret_id, transform=how))
        response = shared_daemon.secret(secret_id, transform=how)
        if how == "auto" and secret == "str":  # no suffix: both give the text unchanged
            assert response.text == powertools[1]
            continue
        same(answer(response, "json"), powertools)
    parsed: Any = SecretsProvider(boto3_client=aws.sm).get(secret_id, transform="json")
    for json_key, path in (("spring.datasource.password", ["spring.datasource.password"]),
                           ("spring%2Edatasource%2Epassword", ["spring.datasource.password"]),
                           ("db.host", ["db", "host"]), ("n.1", ["n", 1])):
        expected = parsed
        for part in path:
            expected = expected[part]
        raw = shared_daemon.raw(f"/secretsmanager/get?secretId={secret_id}&jsonKey={json_key}")
        assert raw.status_code == 200 and raw.json() == expected, raw.text
