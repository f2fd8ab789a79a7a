"""Transforms and query syntax on the findings' own inputs (issue 20: review S3-8, field F4, F5,
N14), over HTTP against the daemon, with upstream calls counted at the proxy."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.conftest import Aws, StartDaemon
from tests.support.process import Daemon
from tests.support.proxy import FaultProxy

REFERENCE = "/aws/reference/secretsmanager/"
DOTTED = {"spring.datasource.password": "pw-dotted", "db": {"host": "h1"},
          "a.b": {"c": "literal-first"}, "a": {"b": {"c": "nested"}}, "list": [1, {"k": "v"}]}


@pytest.fixture(scope="module")
def seeded(aws: Aws) -> Iterator[str]:
    """One prefix holding every value these tests read (module scope: seeded once)."""
    prefix = "tx" + os.urandom(6).hex()
    wrapped = base64.encodebytes(bytes(range(256)) * 2).decode()  # newline every 76 characters
    aws.ssm.put_parameter(Name=f"/{prefix}/key.binary", Type="String", Value=wrapped)
    aws.ssm.put_parameter(Name=f"/{prefix}/crlf", Type="String",
                          Value=wrapped.replace("\n", "\r\n"))
    aws.ssm.put_parameter(Name=f"/{prefix}/list", Type="String", Value="x,y,z")
    aws.ssm.put_parameter(Name=f"/{prefix}/accented", Type="String", Value="héllo")
    aws.ssm.put_parameter(Name=f"/{prefix}/cfg", Type="String", Value=json.dumps(DOTTED))
    aws.sm.create_secret(Name=f"{prefix}/cfg-bin", SecretBinary=b'{"user":"app"}')
    aws.sm.create_secret(Name=f"{prefix}/latin1", SecretBinary=b'{"user":"\xe9"}')
    aws.sm.create_secret(Name=f"{prefix}/spring", SecretString=json.dumps(DOTTED))
    aws.sm.create_secret(Name=f"{prefix}/db", SecretString="v1-value")
    aws.sm.put_secret_value(SecretId=f"{prefix}/db", SecretString="v2-value")  # v1: AWSPREVIOUS
    aws.sm.create_secret(Name=f"{prefix}/db-batch", SecretString="b1-value")
    aws.sm.put_secret_value(SecretId=f"{prefix}/db-batch", SecretString="b2-value")
    yield prefix


@pytest.fixture(scope="module")
def daemon(shared_daemon: Daemon) -> Daemon:
    return shared_daemon


def refused(response: object, code: str, *fragments: str) -> str:
    status = getattr(response, "status_code", None)
    body = response.json()  # type: ignore[attr-defined]
    assert status == 400 and body["__type"] == code, (status, body)
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return str(body["message"])


# S3-8: base64 as Powertools decodes it, and JSON in a binary secret.

def test_wrapped_base64_decodes(daemon: Daemon, seeded: str) -> None:
    original = bytes(range(256)) * 2
    for name in (f"/{seeded}/key.binary", f"/{seeded}/crlf"):
        answer = daemon.param(name, transform="binary")
        assert answer.status_code == 200, answer.text
        assert answer.content == original
        assert answer.headers["Content-Type"] == "application/octet-stream"
    assert daemon.param(f"/{seeded}/key.binary", transform="auto").content == original


def test_values_that_are_not_base64_are_still_refused(daemon: Daemon, seeded: str) -> None:
    # "x,y,z" leaves three alphabet characters (bad length); non-ASCII text cannot be base64.
    for name in (f"/{seeded}/list", f"/{seeded}/accented"):
        message = refused(daemon.param(name, transform="binary"), "TransformFailed",
                          "is not base64", name)
        assert "x,y,z" not in message and "héllo" not in message


def test_binary_secret_holding_utf8_json(daemon: Daemon, seeded: str) -> None:
    secret = f"{seeded}/cfg-bin"
    assert daemon.secret(secret, transform="json").json() == {"user": "app"}
    assert daemon.secret(secret, jsonKey="user").json() == "app"
    assert daemon.secret(secret, jsonKey="user", transform="raw").text == "app"
    # Without a transform the bytes are served as before.
    assert daemon.secret(secret, transform="raw").content == b'{"user":"app"}'
    group = daemon.get("/secretsmanager/batch", params={"secretId": secret, "transform": "json"})
    member = group.json()["SecretValues"][0]
    assert member["SecretString"] == {"user": "app"} and member["SecretBinary"] is None
    picked = daemon.get("/secretsmanager/batch", params={"secretId": secret, "jsonKey": "user"})
    assert picked.json()["SecretValues"][0]["SecretString"] == "app"
    message = refused(daemon.secret(f"{seeded}/latin1", transform="json"), "TransformFailed",
                      "not UTF-8")
    assert "user" not in message


# F4: dotted keys.

def test_literal_dotted_keys_win_and_nested_keys_still_work(daemon: Daemon, seeded: str) -> None:
    secret = f"{seeded}/spring"
    assert daemon.secret(secret, jsonKey="spring.datasource.password").json() == "pw-dotted"
    encoded = daemon.raw("/secretsmanager/get?secretId=" + quote(secret, safe="")
                         + "&jsonKey=spring%2Edatasource%2Epassword")
    assert encoded.status_code == 200 and encoded.json() == "pw-dotted"
    assert daemon.secret(secret, jsonKey="db.host").json() == "h1"
    assert daemon.secret(secret, jsonKey="list.1.k").json() == "v"
    # Both "a.b" and a -> b exist: the literal key wins; a JSON Pointer names either exactly.
    assert daemon.secret(secret, jsonKey="a.b.c").json() == "literal-first"
    assert daemon.secret(secret, jsonKey="/a/b/c").json() == "nested"
    assert daemon.secret(secret, jsonKey="/a.b/c").json() == "literal-first"
    assert daemon.param(f"/{seeded}/cfg", jsonKey="spring.datasource.password").json() \
        == "pw-dotted"


def test_json_key_errors_say_what_was_not_found(daemon: Daemon, seeded: str) -> None:
    secret = f"{seeded}/spring"
    refused(daemon.secret(secret, jsonKey="db.nope"), "TransformFailed",
            "no key 'nope' at 'db'")
    refused(daemon.secret(secret, jsonKey="spring.nope"), "TransformFailed",
            "no key 'spring' at the top level")
    refused(daemon.secret(secret, jsonKey="db.host.x"), "TransformFailed",
            "a string at 'db.host', not an object")
    refused(daemon.secret(secret, jsonKey="list.7"), "TransformFailed",
            "an array of 2 items at 'list', with no item '7'")
    refused(daemon.secret(f"{seeded}/db", jsonKey="x"), "TransformFailed", "is not valid JSON")
    for message in (refused(daemon.secret(secret, jsonKey="db.nope"), "TransformFailed"),):
        assert "h1" not in message and "pw-dotted" not in message


def test_malformed_json_keys_are_refused_before_any_call(daemon: Daemon, proxy: FaultProxy,
                                                         seeded: str) -> None:
    before = proxy.count_matching(seeded)
    refused(daemon.secret(f"{seeded}/never", jsonKey="a..b"), "InvalidParameterValue",
            "'jsonKey'", "JSON Pointer")
    refused(daemon.secret(f"{seeded}/never", jsonKey="/a~2b"), "InvalidParameterValue",
            "'jsonKey'", "'~'")
    assert proxy.count_matching(seeded) == before


# F5: a label on a Secrets Manager reference name is a version stage.

def test_version_stage_label_on_a_reference_name(daemon: Daemon, proxy: FaultProxy,
                                                 seeded: str) -> None:
    name = f"{REFERENCE}{seeded}/db"
    answer = daemon.raw("/systemsmanager/parameters/get?name=" + quote(name, safe="")
                        + "&label=AWSPREVIOUS&withDecryption=true")
    assert answer.status_code == 200, answer.text
    assert answer.json()["Parameter"]["Value"] == "v1-value"
    calls = [c for c in proxy.calls if c.api == "GetParameter" and seeded in str(c.names)]
    assert [c.names for c in calls][-1] == [f"{name}:AWSPREVIOUS"]
    current = daemon.param(name, label="AWSCURRENT", withDecryption="true")
    assert current.status_code == 200 and current.json()["Parameter"]["Value"] == "v2-value"


def test_version_stage_in_the_batch_name_form(daemon: Daemon, proxy: FaultProxy,
                                              seeded: str) -> None:
    name = f"{REFERENCE}{seeded}/db-batch:AWSPREVIOUS"
    answer = daemon.get("/systemsmanager/parameters/batch",
                        params={"name": name, "withDecryption": "true"})
    # What F5 is about: no local 400, and AWS is asked for exactly ``name:stage``. (moto answers
    # with the secret's own name, not the reference, so the daemon lists it as invalid there.)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["InvalidParameters"] == [name] or body["Parameters"][0]["Value"] == "b1-value"
    calls = [c for c in proxy.calls if c.api == "GetParameters" and seeded in str(c.names)]
    assert [c.names for c in calls] == [[name]]


def test_stage_rules_and_ssm_label_rules(daemon: Daemon, proxy: FaultProxy, seeded: str) -> None:
    before = proxy.count_matching(seeded)
    name = f"{REFERENCE}{seeded}/never"
    refused(daemon.param(name, label="a:b"), "InvalidParameterValue", "version stage")
    refused(daemon.param(name, label="S" * 257), "InvalidParameterValue", "longer than 256")
    refused(daemon.get("/systemsmanager/parameters/batch", params={"name": f"{name}:{'S' * 257}"}),
            "InvalidParameterValue", "version stage")
    # On an ordinary name a label is still SSM's: no 'aws' prefix.
    refused(daemon.param(f"/{seeded}/plain", label="AWSPREVIOUS"), "InvalidParameterValue",
            "'label'", "'aws'")
    refused(daemon.get("/systemsmanager/parameters/batch",
                       params={"name": f"/{seeded}/plain:AWSPREVIOUS"}),
            "InvalidParameterValue", "the label in", "'aws'")
    assert proxy.count_matching(seeded) == before


# N14: malformed percent-encoding names its query key.

@pytest.mark.parametrize(("query", "fragment"), [
    ("name=%zz", "malformed percent-encoding in query parameter 'name'"),
    ("name=/a&label=%4", "malformed percent-encoding in query parameter 'label'"),
    ("name=/a&jsonKey=%c3%28", "query parameter 'jsonKey' is not valid UTF-8"),
    ("na%zme=/a", "malformed percent-encoding in the name of query parameter 'na%zme'"),
])
def test_percent_encoding_errors_name_the_key(daemon: Daemon, query: str, fragment: str) -> None:
    refused(daemon.raw("/systemsmanager/parameters/get?" + query), "InvalidParameterValue",
            fragment)


def test_percent_encoding_errors_in_the_secret_path(daemon: Daemon) -> None:
    refused(daemon.raw("/v1/app%zz"), "InvalidParameterValue", "in the path")


def test_group_auto_by_relative_name_as_powertools(start_daemon: StartDaemon, aws: Aws,
                                                   unique: str) -> None:
    # Powertools' get_multiple keys members by name relative to the path, so "/p/json" is
    # parsed by auto there (its suffix rule is rsplit(".")[-1] == "json").
    aws.ssm.put_parameter(Name=f"/{unique}/p/json", Type="String", Value='{"k": 1}')
    aws.ssm.put_parameter(Name=f"/{unique}/p/plain", Type="String", Value='{"k": 2}')
    body = start_daemon().get("/systemsmanager/parameters/path",
                              params={"path": f"/{unique}/p", "transform": "auto"}).json()
    values = {p["Name"].rsplit("/", 1)[-1]: p["Value"] for p in body["Parameters"]}
    assert values == {"json": {"k": 1}, "plain": '{"k": 2}'}
