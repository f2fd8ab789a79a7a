"""Every route returns what a direct call to (fake) AWS returns, in AWS's JSON shape."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Aws
from tests.support.process import Daemon


def _stamp(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


def expected_parameter(aws: Aws, name: str, decrypt: bool = False) -> dict[str, Any]:
    found = aws.ssm.get_parameter(Name=name, WithDecryption=decrypt)["Parameter"]
    # As the AWS extension: Selector and SourceResult always present, null when empty.
    shaped = {"Selector": None, "SourceResult": None, **{k: _stamp(v) for k, v in found.items()}}
    return {"Parameter": shaped, "ResultMetadata": {}}


def expected_secret(aws: Aws, secret_id: str, **selectors: str) -> dict[str, Any]:
    found = aws.sm.get_secret_value(SecretId=secret_id, **selectors)
    found.pop("ResponseMetadata")
    if "SecretBinary" in found:
        found["SecretBinary"] = base64.b64encode(found["SecretBinary"]).decode()
    # As the AWS extension: both value fields always present, the empty one null.
    return {"SecretString": None, "SecretBinary": None,
            **{k: _stamp(v) for k, v in found.items()}, "ResultMetadata": {}}


@pytest.fixture
def seeded(aws: Aws, unique: str) -> dict[str, str]:
    names = {
        "string": f"/{unique}/string", "list": f"/{unique}/list", "secure": f"/{unique}/secure",
        "versioned": f"/{unique}/versioned", "secret": f"{unique}/secret",
        "binary": f"{unique}/binary",
    }
    aws.ssm.put_parameter(Name=names["string"], Type="String", Value="plain value")
    aws.ssm.put_parameter(Name=names["list"], Type="StringList", Value="a,b,c")
    aws.ssm.put_parameter(Name=names["secure"], Type="SecureString", Value="secure value")
    aws.ssm.put_parameter(Name=names["versioned"], Type="String", Value="v1")
    aws.ssm.put_parameter(Name=names["versioned"], Type="String", Value="v2", Overwrite=True)
    aws.ssm.label_parameter_version(Name=names["versioned"], ParameterVersion=1, Labels=["old"])
    aws.sm.create_secret(Name=names["secret"], SecretString="first secret")
    aws.sm.put_secret_value(SecretId=names["secret"], SecretString="second secret")
    aws.sm.create_secret(Name=names["binary"], SecretBinary=b"\x00\x01binary\xff")
    return names


def test_ping_needs_no_token(shared_daemon: Daemon) -> None:
    response = shared_daemon.get("/ping", token=None)
    assert response.status_code == 200
    assert response.text == "healthy"


@pytest.mark.parametrize("kind", ["string", "list"])
def test_plain_parameters_match_aws(shared_daemon: Daemon, aws: Aws, seeded: dict[str, str],
                                    kind: str) -> None:
    response = shared_daemon.param(seeded[kind])
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == expected_parameter(aws, seeded[kind])


def test_secure_string_with_and_without_decryption(shared_daemon: Daemon, aws: Aws,
                                                   seeded: dict[str, str]) -> None:
    name = seeded["secure"]
    encrypted = shared_daemon.param(name).json()
    decrypted = shared_daemon.param(name, withDecryption="true").json()
    assert encrypted == expected_parameter(aws, name, decrypt=False)
    assert decrypted == expected_parameter(aws, name, decrypt=True)
    assert decrypted["Parameter"]["Value"] == "secure value"
    assert encrypted["Parameter"]["Value"] != "secure value"


def test_version_and_label_selectors(shared_daemon: Daemon, aws: Aws,
                                     seeded: dict[str, str]) -> None:
    name = seeded["versioned"]
    by_version = shared_daemon.param(name, version="1").json()
    by_label = shared_daemon.param(name, label="old").json()
    latest = shared_daemon.param(name).json()
    assert by_version == expected_parameter(aws, f"{name}:1")
    assert by_label == expected_parameter(aws, f"{name}:old")
    assert by_version["Parameter"]["Value"] == by_label["Parameter"]["Value"] == "v1"
    assert latest["Parameter"]["Value"] == "v2"


def test_first_of_version_and_label_wins(shared_daemon: Daemon, seeded: dict[str, str]) -> None:
    name = quote(seeded["versioned"], safe="")
    version_first = shared_daemon.get(
        f"/systemsmanager/parameters/get?name={name}&version=2&label=old").json()
    label_first = shared_daemon.get(
        f"/systemsmanager/parameters/get?name={name}&label=old&version=2").json()
    assert version_first["Parameter"]["Value"] == "v2"
    assert label_first["Parameter"]["Value"] == "v1"


def test_parameter_by_arn(shared_daemon: Daemon, aws: Aws, seeded: dict[str, str]) -> None:
    arn = aws.ssm.get_parameter(Name=seeded["string"])["Parameter"]["ARN"]
    response = shared_daemon.param(arn)
    assert response.status_code == 200
    assert response.json() == expected_parameter(aws, arn)


def test_secret_through_parameter_store_reference(shared_daemon: Daemon, aws: Aws,
                                                  seeded: dict[str, str]) -> None:
    name = f"/aws/reference/secretsmanager/{seeded['secret']}"
    response = shared_daemon.param(name, withDecryption="true")
    assert response.status_code == 200
    assert response.json() == expected_parameter(aws, name, decrypt=True)
    assert response.json()["Parameter"]["Value"] == "second secret"


def test_secret_by_name_and_arn(shared_daemon: Daemon, aws: Aws, seeded: dict[str, str]) -> None:
    name = seeded["secret"]
    by_name = shared_daemon.secret(name).json()
    assert by_name == expected_secret(aws, name)
    by_arn = shared_daemon.secret(by_name["ARN"]).json()
    assert by_arn == expected_secret(aws, by_name["ARN"])
    assert by_name["SecretString"] == "second secret"


def test_secret_version_selectors(shared_daemon: Daemon, aws: Aws, seeded: dict[str, str]) -> None:
    name = seeded["secret"]
    previous = shared_daemon.secret(name, versionStage="AWSPREVIOUS").json()
    assert previous == expected_secret(aws, name, VersionStage="AWSPREVIOUS")
    assert previous["SecretString"] == "first secret"
    by_id = shared_daemon.secret(name, versionId=previous["VersionId"]).json()
    assert by_id == expected_secret(aws, name, VersionId=previous["VersionId"])


def test_binary_secret_is_base64(shared_daemon: Daemon, aws: Aws, seeded: dict[str, str]) -> None:
    body = shared_daemon.secret(seeded["binary"]).json()
    assert body == expected_secret(aws, seeded["binary"])
    assert base64.b64decode(body["SecretBinary"]) == b"\x00\x01binary\xff"
    # Present and null, as the AWS extension sends it (clients test for the key).
    assert "SecretString" in body and body["SecretString"] is None


def test_string_secret_and_parameters_carry_their_null_fields(
        shared_daemon: Daemon, seeded: dict[str, str]) -> None:
    secret = shared_daemon.secret(seeded["secret"]).json()
    assert "SecretBinary" in secret and secret["SecretBinary"] is None
    parameter = shared_daemon.param(seeded["string"]).json()["Parameter"]
    assert parameter["Selector"] is None and parameter["SourceResult"] is None
    assert "Selector" in parameter and "SourceResult" in parameter


def test_short_and_alternative_paths(shared_daemon: Daemon, aws: Aws,
                                     seeded: dict[str, str]) -> None:
    name, secret = seeded["string"], seeded["secret"]
    want_param, want_secret = expected_parameter(aws, name), expected_secret(aws, secret)
    assert shared_daemon.get("/parameters/get", params={"name": name}).json() == want_param
    assert shared_daemon.get("/systemsmanager/parameters/get/",
                             params={"name": name}).json() == want_param
    assert shared_daemon.get("/secrets/get", params={"name": secret}).json() == want_secret
    assert shared_daemon.get("/secrets/get", params={"secretId": secret}).json() == want_secret
    assert shared_daemon.get(f"/v1/{secret}").json() == want_secret
    assert shared_daemon.get(f"/v1/{quote(secret, safe='')}").json() == want_secret
    previous = shared_daemon.get(f"/v1/{secret}", params={"versionStage": "AWSPREVIOUS"}).json()
    assert previous["SecretString"] == "first secret"


def test_percent_encoded_and_raw_slashes_are_the_same_name(shared_daemon: Daemon,
                                                           seeded: dict[str, str]) -> None:
    name = seeded["string"]
    raw = shared_daemon.get(f"/systemsmanager/parameters/get?name={name}")
    encoded = shared_daemon.get(f"/systemsmanager/parameters/get?name={quote(name, safe='')}")
    assert raw.status_code == encoded.status_code == 200
    assert raw.json() == encoded.json()
    assert encoded.headers["X-Cache"] == "hit"


def test_every_200_has_cache_headers(shared_daemon: Daemon, seeded: dict[str, str]) -> None:
    first_read_at = time.monotonic()
    first = shared_daemon.param(seeded["list"])
    second = shared_daemon.param(seeded["list"])
    assert first.headers["X-Cache"] == "miss"
    assert second.headers["X-Cache"] == "hit"
    assert int(first.headers["Age"]) == 0
    # Whole seconds since the fetch: no more than the time since the test's first read.
    assert 0 <= int(second.headers["Age"]) <= int(time.monotonic() - first_read_at) + 1
