"""Local mode (issue 23, README "Local mode (no AWS)"): the real daemon started with
``--local FILE`` serves every read shape from the file, with AWS's JSON and errors, while AWS
is unreachable (``AWS_ENDPOINT_URL`` points at a closed port) and no credentials or region are
set: any AWS call would fail, so every 200 below is proof that none was made."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from sidecar.aws.shapes import render_parameter
from tests.support.process import REPO, Daemon, clean_env, free_port

UNREACHABLE = "http://127.0.0.1:9"  # discard: nothing listens there
ACCOUNT_ARN = "arn:aws:ssm:us-east-1:123456789012:parameter"
DB_SECRET = '{"username": "app", "password": "local-db-password"}'
KEY_ID = "c0ffee00-0000-4000-8000-000000000002"
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
FIXTURE = """
[parameters]
"/app/db/host" = { value = "db.internal", modified = 2024-05-01T12:00:00.123Z }
"/app/regions" = { type = "StringList", value = "eu-west-1,us-east-1" }
"/app/db/password" = { type = "SecureString", value = "local-password-1" }
"/app/config.json" = '{"debug": true, "db": {"pool": 5}}'
"/other/x" = "outside"

[parameters."/app/flag"]
versions = [
  { value = "off", labels = ["stable"], modified = 2024-05-01T12:00:00.123Z },
  { value = "on", modified = 2024-06-01T00:00:00Z },
]

[secrets]
"prod/db" = '""" + DB_SECRET + """'
"prod/cert" = { binary = "AAEC/w==" }

[secrets."prod/api-key"]
versions = [
  { value = "old-key" },
  { value = "new-key", version_id = \"""" + KEY_ID + """\", created = 2024-05-01T12:00:00.123Z },
]

[secrets."team/token"]
value = "team-token-value"
tags = { team = "payments" }

[s3]
"app-config/allow-list.txt" = "10.0.0.0/8\\n"
"app-config/ca.pem" = { file = "ca.pem", content_type = "application/x-pem-file" }
"""
VALUES = ("db.internal", "local-password-1", "local-db-password", "old-key", "new-key",
          "team-token-value", "10.0.0.0/8")
PREFETCH = "ssm:/other/x,secret-tag:team"  # by id, and by tag key (ListSecrets)


def start_local(home: Path, token: str, path: Path, **extra: str) -> Daemon:
    """The daemon on ``--local path``: no region, no credentials, AWS unreachable."""
    port = free_port()
    env = clean_env(home, {"AWS_TOKEN": token, "AWS_ENDPOINT_URL": UNREACHABLE,
                           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port),
                           "PARAMETERS_SECRETS_EXTENSION_SHUTDOWN_GRACE_SECS": "0",
                           "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "debug", **extra})
    assert not any(name.startswith(("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS"))
                   for name in env)
    return Daemon(env, token, port, ("--local", str(path))).wait_ready()


@pytest.fixture(scope="module")
def fixture_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("local")
    (folder / "ca.pem").write_bytes(CA)
    path = folder / "local.toml"
    path.write_text(FIXTURE)
    return path


@pytest.fixture(scope="module")
def local(home: Path, token: str, fixture_file: Path) -> Iterator[Daemon]:
    daemon = start_local(home, token, fixture_file, PARAMETERS_SECRETS_EXTENSION_PREFETCH=PREFETCH)
    yield daemon
    daemon.kill()


def ok(response: requests.Response) -> requests.Response:
    assert response.status_code == 200, response.text
    return response


def error(response: requests.Response, code: str) -> str:
    assert response.status_code == 400, response.text
    assert response.json()["__type"] == code
    return str(response.json()["message"])


def test_parameter_is_aws_getparameter_byte_for_byte(local: Daemon) -> None:
    first = ok(local.param("/app/db/host"))
    # The body AWS's answer renders to (botocore parses it into this, in the model's order).
    assert first.content == render_parameter({
        "Name": "/app/db/host", "Type": "String", "Value": "db.internal", "Version": 1,
        "LastModifiedDate": datetime(2024, 5, 1, 12, 0, 0, 123000, UTC),
        "ARN": f"{ACCOUNT_ARN}/app/db/host", "DataType": "text"})
    assert first.json()["Parameter"]["LastModifiedDate"] == "2024-05-01T12:00:00.123Z"
    assert first.headers["X-Cache"] == "miss"
    assert ok(local.param("/app/db/host")).headers["X-Cache"] == "hit"
    by_arn = ok(local.param(f"{ACCOUNT_ARN}/app/db/host")).json()["Parameter"]
    assert by_arn["Value"] == "db.internal"
    # An ARN's region and account are not checked: the ARNs used in AWS work unchanged.
    foreign = "arn:aws:ssm:eu-west-1:999999999999:parameter/app/db/host"
    assert ok(local.param(foreign)).json()["Parameter"]["Value"] == "db.internal"
    assert ok(local.param("/app/regions")).json()["Parameter"]["Type"] == "StringList"


def test_versions_labels_and_their_errors(local: Daemon) -> None:
    latest = ok(local.param("/app/flag")).json()["Parameter"]
    assert (latest["Value"], latest["Version"], latest["Selector"]) == ("on", 2, None)
    assert latest["LastModifiedDate"] == "2024-06-01T00:00:00.000Z"
    first = ok(local.param("/app/flag", version="1")).json()["Parameter"]
    assert (first["Value"], first["Version"], first["Selector"]) == ("off", 1, ":1")
    labelled = ok(local.param("/app/flag", label="stable")).json()["Parameter"]
    assert (labelled["Value"], labelled["Selector"]) == ("off", ":stable")
    # The selector inside the name, as GetParameter takes it (review).
    for name, value in (("/app/flag:stable", "off"), ("/app/flag:1", "off"),
                        ("/app/flag:2", "on")):
        assert ok(local.param(name)).json()["Parameter"]["Value"] == value, name
    assert error(local.param("/app/flag", version="9"), "ParameterVersionNotFound") == (
        "Systems Manager could not find version 9 of /app/flag. Verify the version and try "
        "again.")
    assert error(local.param("/app/flag", label="nolabel"), "ParameterNotFound") == (
        "Parameter /app/flag:nolabel not found.")
    assert error(local.param("/app/nope"), "ParameterNotFound") == "Parameter /app/nope not found."


def test_secure_string_is_opaque_without_decryption(local: Daemon) -> None:
    hidden = ok(local.param("/app/db/password")).json()["Parameter"]
    assert hidden["Type"] == "SecureString" and hidden["Value"] != "local-password-1"
    assert b"local-password" not in base64.b64decode(hidden["Value"])
    again = ok(local.param("/app/db/password", refreshNow="true")).json()["Parameter"]
    assert again["Value"] == hidden["Value"]  # the same stand-in for the same value
    shown = ok(local.param("/app/db/password", withDecryption="true")).json()["Parameter"]
    assert shown["Value"] == "local-password-1"


def test_secret_through_a_parameter_store_reference(local: Daemon) -> None:
    name = "/aws/reference/secretsmanager/prod/api-key"
    current = ok(local.param(name, withDecryption="true")).json()["Parameter"]
    assert (current["Value"], current["Version"], current["Type"]) == ("new-key", 0,
                                                                        "SecureString")
    assert current["ARN"].startswith("arn:aws:secretsmanager:us-east-1:123456789012:secret:"
                                     "prod/api-key-")
    source = json.loads(current["SourceResult"])
    assert (source["name"], source["versionId"]) == ("prod/api-key", KEY_ID)
    previous = ok(local.param(name, withDecryption="true", label="AWSPREVIOUS")).json()
    assert previous["Parameter"]["Value"] == "old-key"
    assert previous["Parameter"]["Selector"] == ":AWSPREVIOUS"
    error(local.param(name), "ValidationException")  # withDecryption=true is required
    error(local.param("/aws/reference/secretsmanager/nope", withDecryption="true"),
          "ParameterNotFound")


def test_secrets_by_name_arn_stage_and_id(local: Daemon) -> None:
    body = ok(local.secret("prod/api-key")).json()
    arn = body.pop("ARN")
    assert arn.startswith("arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/api-key-")
    assert len(arn) == len(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/api-key-") + 6
    assert body == {"Name": "prod/api-key", "VersionId": KEY_ID, "SecretString": "new-key",
                    "VersionStages": ["AWSCURRENT"], "CreatedDate": "2024-05-01T12:00:00.123Z",
                    "SecretBinary": None, "ResultMetadata": {}}
    for secret_id in (arn, arn[:-7], "arn:aws:secretsmanager:eu-west-1:999999999999:secret:"
                      "prod/api-key-AbCdEf"):
        assert ok(local.secret(secret_id)).json()["SecretString"] == "new-key"
    previous = ok(local.secret("prod/api-key", versionStage="AWSPREVIOUS")).json()
    assert (previous["SecretString"], previous["VersionStages"]) == ("old-key", ["AWSPREVIOUS"])
    by_id = ok(local.secret("prod/api-key", versionId=previous["VersionId"])).json()
    assert by_id["SecretString"] == "old-key"
    assert ok(local.get("/v1/prod/api-key")).json()["SecretString"] == "new-key"
    assert ok(local.get("/secrets/get", params={"name": "prod/db"})).json()[
        "SecretString"] == DB_SECRET
    binary = ok(local.secret("prod/cert")).json()
    assert binary["SecretBinary"] == "AAEC/w==" and binary["SecretString"] is None
    assert error(local.secret("prod/nope"), "ResourceNotFoundException") == (
        "Secrets Manager can't find the specified secret.")
    assert error(local.secret("prod/db", versionStage="NOPE"),
                 "ResourceNotFoundException").endswith("staging label: NOPE")


def test_group_reads(local: Daemon) -> None:
    batch = ok(local.get("/systemsmanager/parameters/batch", params=[
        ("name", "/app/db/host"), ("name", "/app/flag:1"), ("name", "/app/nope"),
        ("name", "/app/flag:9")])).json()
    assert [p["Value"] for p in batch["Parameters"]] == ["db.internal", "off"]
    assert batch["InvalidParameters"] == ["/app/nope", "/app/flag:9"]
    tree = ok(local.get("/systemsmanager/parameters/path",
                        params={"path": "/app", "recursive": "true"})).json()
    assert [p["Name"] for p in tree["Parameters"]] == [
        "/app/config.json", "/app/db/host", "/app/db/password", "/app/flag", "/app/regions"]
    top = ok(local.get("/systemsmanager/parameters/path", params={"path": "/app/"})).json()
    assert [p["Name"] for p in top["Parameters"]] == ["/app/config.json", "/app/flag",
                                                      "/app/regions"]
    secure = ok(local.get("/systemsmanager/parameters/path", params={
        "path": "/app", "recursive": "true", "type": "SecureString",
        "withDecryption": "true"})).json()
    assert [p["Value"] for p in secure["Parameters"]] == ["local-password-1"]
    stable = ok(local.get("/systemsmanager/parameters/path", params={
        "path": "/app", "label": "stable"})).json()
    assert [(p["Name"], p["Value"]) for p in stable["Parameters"]] == [("/app/flag", "off")]
    # The path read warmed each member's single-read entry.
    assert ok(local.param("/app/config.json")).headers["X-Cache"] == "hit"
    secrets = ok(local.get("/secretsmanager/batch", params=[
        ("secretId", "prod/db"), ("secretId", "prod/nope")])).json()
    assert [s["SecretString"] for s in secrets["SecretValues"]] == [DB_SECRET]
    assert secrets["Errors"] == [{"SecretId": "prod/nope", "ErrorCode":
                                  "ResourceNotFoundException", "Message":
                                  "Secrets Manager can't find the specified secret."}]


def test_s3_objects(local: Daemon) -> None:
    pem = ok(local.get("/s3/get", params={"bucket": "app-config", "key": "ca.pem"}))
    assert pem.content == CA
    assert pem.headers["Content-Type"] == "application/x-pem-file"
    assert pem.headers["ETag"] == '"' + hashlib.md5(CA).hexdigest() + '"'
    assert pem.headers["Last-Modified"].endswith(" GMT")
    text = ok(local.get("/s3/get", params={"bucket": "app-config", "key": "allow-list.txt"}))
    assert text.content == b"10.0.0.0/8\n" and text.headers["Content-Type"] == "text/plain"
    error(local.get("/s3/get", params={"bucket": "app-config", "key": "nope"}), "NoSuchKey")
    error(local.get("/s3/get", params={"bucket": "other-bucket", "key": "x"}), "NoSuchBucket")


def test_transforms(local: Daemon) -> None:
    assert ok(local.param("/app/config.json", transform="json")).json() == {
        "debug": True, "db": {"pool": 5}}
    assert ok(local.param("/app/config.json", jsonKey="db.pool")).json() == 5
    assert ok(local.param("/app/regions", transform="stringlist")).json() == [
        "eu-west-1", "us-east-1"]
    assert ok(local.secret("prod/db", jsonKey="password", transform="raw")).text == (
        "local-db-password")
    assert ok(local.secret("prod/cert", transform="binary")).content == b"\x00\x01\x02\xff"


def test_prefetch_by_id_and_by_tag_key(local: Daemon) -> None:
    deadline = time.monotonic() + 20
    while local.output.count("prefetch done") < 2:  # the ids' batch, then the tag's
        assert time.monotonic() < deadline, local.output
        time.sleep(0.02)
    assert ok(local.param("/other/x")).headers["X-Cache"] == "hit"
    token = ok(local.secret("team/token"))
    assert token.headers["X-Cache"] == "hit" and token.json()["SecretString"] == (
        "team-token-value")
    assert ('upstream_calls_total{service="secretsmanager",operation="ListSecrets",'
            'outcome="success"} 1') in ok(local.get("/metrics")).text


def test_metrics_count_hits_and_what_the_file_answered(local: Daemon) -> None:
    ok(local.param("/app/regions"))
    ok(local.param("/app/regions"))
    metrics = ok(local.get("/metrics")).text
    hits = [line for line in metrics.splitlines()
            if line.startswith('parameters_secrets_sidecar_cache_gets_total{service="ssm",'
                               'result="hit"}')]
    assert hits and float(hits[0].split()[-1]) >= 1
    assert ('parameters_secrets_sidecar_upstream_calls_total{service="ssm",operation='
            '"GetParameter",outcome="success"}') in metrics


def test_the_python_client_works_unchanged(local: Daemon) -> None:
    code = ("from sidecar_client import get_parameter, get_secret\n"
            "print(get_parameter('/app/flag'), get_secret('prod/db', json_key='username'),"
            " get_parameter('/app/config.json', transform='auto')['db']['pool'])\n")
    env = {"PATH": os.environ.get("PATH", ""), "AWS_TOKEN": local.token,
           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(local.port),
           "PYTHONPATH": str(REPO / "client")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["on", "app", "5"]


def test_nothing_went_to_aws_and_no_value_was_logged(local: Daemon) -> None:
    ok(local.param("/app/db/password", withDecryption="true", refreshNow="true"))
    ok(local.secret("prod/api-key", versionStage="AWSPREVIOUS", refreshNow="true"))
    output = local.output
    assert "upstream call" in output and "source=local file" in output  # DEBUG is on
    for word in ("UpstreamUnavailable", "UpstreamTimeout", "InternalFailure", "no AWS credentials",
                 "Traceback", "ERROR"):
        assert word not in output
    for value in VALUES:
        assert value not in output


def test_a_changed_file_is_seen_after_the_ttl(home: Path, token: str, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(CA)
    path = tmp_path / "local.toml"
    path.write_text(FIXTURE)
    daemon = start_local(home, token, path, PARAMETERS_SECRETS_EXTENSION_TTL_SECS="1")
    try:
        assert ok(daemon.param("/app/db/host")).json()["Parameter"]["Value"] == "db.internal"
        etag = ok(daemon.get("/s3/get", params={"bucket": "app-config", "key": "ca.pem"})
                  ).headers["ETag"]
        path.write_text(FIXTURE.replace('"db.internal"', '"db2.internal.example"'))
        time.sleep(1.1)  # past the 1 s TTL (and the file's once-a-second look)
        assert ok(daemon.param("/app/db/host")).json()["Parameter"]["Value"] == (
            "db2.internal.example")
        unchanged = ok(daemon.get("/s3/get", params={"bucket": "app-config", "key": "ca.pem"}))
        assert unchanged.headers["ETag"] == etag and unchanged.content == CA
        assert ('upstream_calls_total{service="s3",operation="GetObject",outcome='
                '"not_modified"} 1') in ok(daemon.get("/metrics")).text
        # An invalid edit: the last good content stays in service, one WARN line says why.
        path.write_text(FIXTURE.replace('type = "StringList"', 'type = "Strin"'))
        time.sleep(1.1)
        assert ok(daemon.param("/app/db/host")).json()["Parameter"]["Value"] == (
            "db2.internal.example")
        time.sleep(1.1)
        ok(daemon.param("/app/db/host"))
        warnings = [line for line in daemon.output.splitlines() if "local file invalid" in line]
        assert len(warnings) == 1 and "WARN" in warnings[0]
        assert 'parameters."/app/regions".type' in warnings[0]
        (tmp_path / "ca.pem").write_bytes(CA + b"# more\n")
        path.write_text(FIXTURE.replace('"db.internal"', '"db3.internal"'))
        time.sleep(1.1)
        assert ok(daemon.param("/app/db/host")).json()["Parameter"]["Value"] == "db3.internal"
        changed = ok(daemon.get("/s3/get", params={"bucket": "app-config", "key": "ca.pem"}))
        assert changed.content == CA + b"# more\n" and changed.headers["ETag"] != etag
        assert "local file read again" in daemon.output
    finally:
        daemon.kill()


def test_a_bad_file_stops_the_start_with_one_line(home: Path, token: str,
                                                 tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[parameters."/app/flag"]\nversions = [\n  { value = "s3cr3t-a", labels '
                    '= ["stable"] },\n  { value = "s3cr3t-b", labels = ["stable"] },\n]\n')
    env = clean_env(home, {"AWS_TOKEN": token, "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT":
                           str(free_port())})
    done = subprocess.run([sys.executable, "-m", "sidecar", "--local", str(path)], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert lines == [f"[parameters-secrets-sidecar] ERROR local file {path}: "
                     'parameters."/app/flag".versions[1].labels: label \'stable\' is on '
                     "version 1 already"]
    assert "s3cr3t" not in done.stdout + done.stderr


def test_json_file_through_the_variable(home: Path, token: str, tmp_path: Path) -> None:
    path = tmp_path / "local.json"
    path.write_text(json.dumps({
        "parameters": {"/j/a": {"value": "json-a", "modified": "2024-05-01T12:00:00Z"}},
        "secrets": {"j/bin": {"binary": "AAEC/w=="}},
        "s3": {"j-bucket/k.json": '{"x": 1}'}}))
    port = free_port()
    env = clean_env(home, {"AWS_TOKEN": token, "AWS_ENDPOINT_URL": UNREACHABLE,
                           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port),
                           "PARAMETERS_SECRETS_EXTENSION_LOCAL_FILE": str(path)})
    daemon = Daemon(env, token, port).wait_ready()
    try:
        parameter = ok(daemon.param("/j/a")).json()["Parameter"]
        assert (parameter["Value"], parameter["LastModifiedDate"]) == (
            "json-a", "2024-05-01T12:00:00.000Z")
        assert ok(daemon.secret("j/bin")).json()["SecretBinary"] == "AAEC/w=="
        found = ok(daemon.get("/s3/get", params={"bucket": "j-bucket", "key": "k.json"}))
        assert found.json() == {"x": 1}
        assert found.headers["Content-Type"] == "application/json"
    finally:
        daemon.kill()


def test_the_readme_example_is_served(home: Path, token: str, tmp_path: Path) -> None:
    """The README's example file, as written, with the certificate file it names."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Local mode (no AWS)", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "fixtures").mkdir()
    (tmp_path / "fixtures" / "ca.pem").write_bytes(CA)
    path = tmp_path / "local.toml"
    path.write_text(example)
    daemon = start_local(home, token, path)
    try:
        assert ok(daemon.param("/app/flag", label="stable")).json()["Parameter"]["Value"] == "off"
        assert ok(daemon.secret("prod/api-key", versionStage="AWSPREVIOUS")).json()[
            "SecretString"] == "old-key"
        assert ok(daemon.get("/s3/get", params={"bucket": "app-config", "key": "ca.pem"})
                  ).content == CA
    finally:
        daemon.kill()
