"""A drop-in for the Secrets Manager Agent: the daemon started with the Agent's configuration
files, and the Agent's own behaviours re-expressed with moto, through real HTTP."""

from __future__ import annotations

import base64
import concurrent.futures
import time
from pathlib import Path

import boto3
import pytest
import requests

from tests.conftest import REGION, Aws, StartDaemon
from tests.support.process import Daemon, free_port
from tests.support.proxy import FaultProxy, Rule

OTHER_ACCOUNT = "111111111111"
THIRD_ACCOUNT = "222222222222"


def _role(account: str, name: str = "reader") -> str:
    return f"arn:aws:iam::{account}:role/{name}"


def _write(home: Path, unique: str, text: str) -> str:
    path = home / f"agent-{unique}.toml"
    path.write_text(text)
    return str(path)


def _as_role(moto_url: str, role: str, service: str, region: str = REGION) -> object:
    """A boto3 client with the role's credentials (moto keeps each account's data apart)."""
    sts = boto3.client("sts", region_name=REGION, endpoint_url=moto_url,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    found = sts.assume_role(RoleArn=role, RoleSessionName="tests")["Credentials"]
    return boto3.client(service, region_name=region, endpoint_url=moto_url,
                        aws_access_key_id=found["AccessKeyId"],
                        aws_secret_access_key=found["SecretAccessKey"],
                        aws_session_token=found["SessionToken"])


def _poll(check: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout} s")
        time.sleep(0.05)


# -- the configuration file, each key in effect ---------------------------------------------------

def test_a_flat_configuration_is_in_effect(start_daemon: StartDaemon, aws: Aws, moto_url: str,
                                           proxy: FaultProxy, home: Path, unique: str) -> None:
    port = free_port()
    west = boto3.client("secretsmanager", region_name="us-west-2", endpoint_url=moto_url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    names = [f"{unique}-flat-{index}" for index in range(3)]
    for name in names:
        west.create_secret(Name=name, SecretString=f"value-{name}")
    path = _write(home, unique, f"""
log_level = "DEBUG"
http_port = "{port}"
ttl_seconds = "300"
cache_size = "2"
ssrf_headers = ["X-Custom-Token"]
ssrf_env_variables = ["MY_TOKEN"]
path_prefix = "/mine/"
max_conn = 20
region = "us-west-2"
validate_credentials = true
""")
    before = proxy.count_api("GetCallerIdentity")
    daemon = start_daemon(("--config", path), port=str(port), MY_TOKEN="flat-token",
                          AWS_TOKEN="", PARAMETERS_SECRETS_EXTENSION_HTTP_PORT="")
    daemon.token = "flat-token"
    assert proxy.count_api("GetCallerIdentity") == before + 1  # validate_credentials

    def read(name: str, header: str = "X-Custom-Token") -> requests.Response:
        return requests.get(f"{daemon.base}/secretsmanager/get", params={"secretId": name},
                            headers={header: "flat-token"}, timeout=10)

    first = read(names[0])  # region us-west-2: the secret exists only there
    assert first.status_code == 200 and first.json()["SecretString"] == f"value-{names[0]}"
    assert read(names[0], "X-Aws-Parameters-Secrets-Token").status_code == 403  # ssrf_headers
    assert read(names[0], "X-Vault-Token").status_code == 403
    by_path = requests.get(f"{daemon.base}/mine/{names[0]}",
                           headers={"X-Custom-Token": "flat-token"}, timeout=10)
    assert by_path.status_code == 200 and by_path.json() == first.json()  # path_prefix
    assert requests.get(f"{daemon.base}/v1/{names[0]}", timeout=10,
                        headers={"X-Custom-Token": "flat-token"}).status_code == 404
    assert read(names[0]).headers["X-Cache"] == "hit"
    read(names[1])
    read(names[2])  # cache_size = 2: the least recently used (names[0]) is evicted
    assert read(names[0]).headers["X-Cache"] == "miss"
    assert "DEBUG request" in daemon.output  # log_level
    assert "max_inbound_connections=20" in daemon.output
    assert "flat-token" not in daemon.output


def test_a_nested_configuration_is_in_effect(start_daemon: StartDaemon, aws: Aws,
                                             proxy: FaultProxy, rules: list[Rule], home: Path,
                                             unique: str) -> None:
    name = f"{unique}-nested"
    aws.sm.create_secret(Name=name, SecretString="v1")
    path = _write(home, unique, f"""
[logging]
log_level = "warn"

[capabilities.secrets_manager]
path_prefix = "/v9/"
max_conn = 30
max_roles = 2
ignore_transient_errors = false
validate_credentials = false

[capabilities.secrets_manager.cache]
ttl_seconds = 1
cache_size = 100

[capabilities.secrets_manager.security]
ssrf_headers = ["X-Nested-Token"]
ssrf_env_variables = ["NESTED_TOKEN"]

[[capabilities.secrets_manager.prefetch.secrets]]
secret_id = "{name}"
""")
    before = proxy.count_api("GetCallerIdentity")
    daemon = start_daemon(("--config", path), NESTED_TOKEN="nested-token", AWS_TOKEN="")
    headers = {"X-Nested-Token": "nested-token"}
    assert proxy.count_api("GetCallerIdentity") == before  # validate_credentials off

    def read() -> requests.Response:
        return requests.get(f"{daemon.base}/v9/{name}", headers=headers, timeout=10)

    assert read().json()["SecretString"] == "v1"
    aws.sm.put_secret_value(SecretId=name, SecretString="v2")
    _poll(lambda: read().json().get("SecretString") == "v2", "ttl_seconds = 1 expiry")
    # ignore_transient_errors = false: once the TTL is over, a 5xx is answered, not the old value
    rules.append(proxy.add(Rule(name, "error500")))
    _poll(lambda: read().status_code == 500, "the upstream error reaching the client")
    assert " INFO " not in daemon.output and "[parameters-secrets-sidecar] INFO" not in \
        daemon.output  # log_level = warn
    assert "v2" not in daemon.output and "nested-token" not in daemon.output


def test_invalid_configuration_stops_start_up_with_one_line(start_daemon: StartDaemon,
                                                            home: Path, unique: str) -> None:
    path = _write(home, unique, "[capabilities.secrets_manager.cache]\nttl_seconds = 99999\n")
    daemon = start_daemon(("--config", path), wait=False)
    assert daemon.finish() == 2
    lines = [line for line in daemon.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "capabilities.secrets_manager.cache.ttl_seconds = 99999 is invalid: expected a whole " \
           "number from 0 to 86400" in lines[0]
    missing = start_daemon(("--config", str(home / "nope.toml")), wait=False)
    assert missing.finish() == 2
    assert "cannot read the configuration file" in missing.output


def test_failed_credential_validation_stops_start_up(start_daemon: StartDaemon, proxy: FaultProxy,
                                                     rules: list[Rule], home: Path,
                                                     unique: str) -> None:
    path = _write(home, unique, "validate_credentials = true\n")
    rule = proxy.add(Rule("", "error", status=403, code="InvalidClientTokenId",
                          apis=("GetCallerIdentity",)))
    rules.append(rule)
    daemon = start_daemon(("--config", path), wait=False)
    assert daemon.finish() == 1
    assert "AWS credentials failed validation (validate_credentials): InvalidClientTokenId" \
        in daemon.output
    proxy.remove(rule)
    # A transient failure is only a warning while ignore_transient_errors holds (the default).
    rules.append(proxy.add(Rule("", "error500", apis=("GetCallerIdentity",))))
    tolerant = start_daemon(("--config", path))
    assert "could not be validated; starting anyway" in tolerant.output
    strict = _write(home, unique + "-strict",
                    "validate_credentials = true\nignore_transient_errors = false\n")
    refused = start_daemon(("--config", strict), wait=False)
    assert refused.finish() == 1


def test_max_conn_plus_one_is_answered_429_and_ping_still_answers(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, rules: list[Rule], home: Path,
        unique: str) -> None:
    names = [f"{unique}-held-{index}" for index in range(3)]
    for name in names:
        aws.sm.create_secret(Name=name, SecretString="v")
    gate = proxy.add(Rule(f"{unique}-held-", "gate"))
    rules.append(gate)
    daemon = start_daemon(("--config", _write(home, unique, "max_conn = 3\n")))
    warm = f"{unique}-warm"
    aws.sm.create_secret(Name=warm, SecretString="w")
    assert daemon.secret(warm).status_code == 200
    def read(name: str) -> requests.Response:  # a connection of its own per thread
        return requests.get(f"{daemon.base}/secretsmanager/get", params={"secretId": name},
                            headers={"X-Aws-Parameters-Secrets-Token": daemon.token}, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        held = [pool.submit(read, name) for name in names]
        proxy.wait_held(gate, 3)
        extra = requests.get(f"{daemon.base}/secretsmanager/get", params={"secretId": names[0]},
                             headers={"X-Aws-Parameters-Secrets-Token": daemon.token}, timeout=10)
        assert extra.status_code == 429
        assert extra.json()["__type"] == "TooManyConnections"
        assert requests.get(f"{daemon.base}/ping", timeout=10).text == "healthy"
        hit = requests.get(f"{daemon.base}/secretsmanager/get", params={"secretId": warm},
                           headers={"X-Aws-Parameters-Secrets-Token": daemon.token}, timeout=10)
        assert hit.status_code == 200 and hit.headers["X-Cache"] == "hit"  # hits never wait
        proxy.release(gate)
        assert [future.result(timeout=20).status_code for future in held] == [200, 200, 200]
    assert daemon.secret(names[0]).status_code == 200  # the slots are free again


def test_the_log_file_is_written_only_when_asked(start_daemon: StartDaemon, aws: Aws, home: Path,
                                                 tmp_path: Path, unique: str) -> None:
    name = f"{unique}-logged"
    aws.sm.create_secret(Name=name, SecretString="logged-secret-value")
    path = _write(home, unique, '[logging]\nlog_level = "debug"\nlog_to_file = true\n')
    daemon = start_daemon(("--config", path), LOGS_DIRECTORY=str(tmp_path))
    assert daemon.secret(name).status_code == 200
    log = tmp_path / "parameters-secrets-sidecar.log"
    _poll(lambda: log.exists() and "DEBUG request" in log.read_text(), "the log file")
    assert "logged-secret-value" not in log.read_text() and daemon.token not in log.read_text()
    assert "DEBUG request" not in daemon.output  # to the file instead of stdout


def test_file_credentials_are_used_and_long_term_keys_refused(
        start_daemon: StartDaemon, aws: Aws, home: Path, unique: str) -> None:
    name = f"{unique}-filecreds"
    aws.sm.create_secret(Name=name, SecretString="v")
    credentials = home / f"creds-{unique}"
    credentials.write_text("[default]\naws_access_key_id = testing\n"
                           "aws_secret_access_key = testing\n")
    path = _write(home, unique, f'credentials_file_path = "{credentials}"\n')
    # No credentials in the environment: only the file can sign.
    daemon = start_daemon(("--config", path), AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
    refused = daemon.secret(name)
    assert refused.status_code == 500 and "no aws_session_token" in refused.json()["message"]
    credentials.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = "
                           "testing\naws_session_token = session\n")
    assert daemon.secret(name, refreshNow="true").status_code == 200


# -- the Agent's behaviours -----------------------------------------------------------------------

@pytest.fixture
def agent(start_daemon: StartDaemon, home: Path, unique: str) -> Daemon:
    """The daemon as an Agent user runs it: a config file, everything else default."""
    return start_daemon(("--config", _write(home, unique, "ttl_seconds = 300\n")))


def test_retrieval_by_name_arn_binary_and_size(agent: Daemon, aws: Aws, unique: str) -> None:
    created = aws.sm.create_secret(Name=f"{unique}-plain", SecretString="plain-value")
    by_name = agent.secret(f"{unique}-plain")
    by_arn = agent.secret(created["ARN"])
    assert by_name.json()["SecretString"] == by_arn.json()["SecretString"] == "plain-value"
    assert by_arn.json()["ARN"] == created["ARN"]
    blob = bytes(range(256)) * 4
    aws.sm.create_secret(Name=f"{unique}-binary", SecretBinary=blob)
    binary = agent.secret(f"{unique}-binary").json()
    assert base64.b64decode(binary["SecretBinary"]) == blob and binary["SecretString"] is None
    large = "x" * 60_000
    aws.sm.create_secret(Name=f"{unique}-large", SecretString=large)
    assert agent.secret(f"{unique}-large").json()["SecretString"] == large
    assert agent.get(f"/v1/{unique}-plain").json() == by_name.json()


def test_missing_secret_is_400_also_with_refresh_now(agent: Daemon, unique: str) -> None:
    for query in ({}, {"refreshNow": "true"}):
        answer = agent.secret(f"{unique}-missing", **query)
        assert answer.status_code == 400
        assert answer.json()["__type"] == "ResourceNotFoundException"


def test_versions_stages_refresh_now_and_stage_moves(agent: Daemon, aws: Aws, unique: str) -> None:
    name = f"{unique}-versions"
    first = aws.sm.create_secret(Name=name, SecretString="one")["VersionId"]
    assert agent.secret(name).json()["SecretString"] == "one"
    second = aws.sm.put_secret_value(SecretId=name, SecretString="two",
                                     VersionStages=["AWSPENDING"])["VersionId"]
    assert agent.secret(name, versionStage="AWSPENDING").json()["SecretString"] == "two"
    assert agent.secret(name, versionStage="AWSCURRENT").json()["SecretString"] == "one"
    assert agent.secret(name, versionId=second).json()["VersionId"] == second
    assert agent.secret(name, versionId=first).json()["SecretString"] == "one"
    aws.sm.update_secret_version_stage(SecretId=name, VersionStage="AWSCURRENT",
                                       MoveToVersionId=second, RemoveFromVersionId=first)
    # (moto keeps answering an unqualified read with the old version after a stage move, so the
    # stage is named: the cache entry for AWSCURRENT is the one the move makes stale.)
    current = {"versionStage": "AWSCURRENT"}
    assert agent.secret(name, **current).json()["SecretString"] == "one"  # until refreshNow
    refreshed = agent.secret(name, refreshNow="true", **current)
    assert refreshed.json()["SecretString"] == "two" and refreshed.headers["X-Cache"] == "bypass"
    assert agent.secret(name, **current).json()["VersionId"] == second
    aws.sm.put_secret_value(SecretId=name, SecretString="three")
    assert agent.secret(name, refreshNow="1").json()["SecretString"] == "three"


def test_ttl_zero_disables_caching(start_daemon: StartDaemon, aws: Aws, home: Path,
                                   unique: str) -> None:
    name = f"{unique}-ttl0"
    aws.sm.create_secret(Name=name, SecretString="a")
    daemon = start_daemon(("--config", _write(home, unique, "ttl_seconds = 0\n")))
    assert daemon.secret(name).json()["SecretString"] == "a"
    aws.sm.put_secret_value(SecretId=name, SecretString="b")
    answer = daemon.secret(name)
    assert answer.json()["SecretString"] == "b" and answer.headers["X-Cache"] != "hit"


def test_token_forwarding_and_ping_rules(agent: Daemon, aws: Aws, unique: str) -> None:
    name = f"{unique}-token"
    aws.sm.create_secret(Name=name, SecretString="v")
    assert agent.secret(name).status_code == 200
    assert agent.get("/secretsmanager/get", token=None,
                     params={"secretId": name}).status_code == 403
    assert agent.get("/secretsmanager/get", token="wrong",
                     params={"secretId": name}).status_code == 403
    vault = requests.get(f"{agent.base}/v1/{name}", headers={"X-Vault-Token": agent.token},
                         timeout=10)
    assert vault.status_code == 200
    forwarded = agent.get("/secretsmanager/get", params={"secretId": name},
                          headers={"X-Forwarded-For": "10.0.0.1"})
    assert forwarded.status_code == 400
    assert requests.get(f"{agent.base}/ping", timeout=10).text == "healthy"
    assert agent.get("/ping").text == "healthy"


def test_prefetch_by_id_and_by_tag_key_serves_the_prefetched_value(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, home: Path,
        unique: str) -> None:
    tag = f"team-{unique}"
    tagged = [f"{unique}-tagged-{index}" for index in range(3)]
    for name in tagged:
        aws.sm.create_secret(Name=name, SecretString=f"old-{name}",
                             Tags=[{"Key": tag, "Value": "x"}])
    aws.sm.create_secret(Name=f"{unique}-prefix-only", SecretString="no",
                         Tags=[{"Key": tag + "-longer", "Value": "x"}])  # the filter's prefix
    explicit = f"{unique}-explicit"
    aws.sm.create_secret(Name=explicit, SecretString="old-explicit")
    path = _write(home, unique, f"""
[capabilities.secrets_manager.prefetch]
max_jitter_seconds = 0
secrets = [{{ secret_id = "{explicit}" }}, {{ secret_id = "{unique}-missing" }}]
filter_tags = [{{ key = "{tag}" }}]
""")
    daemon = start_daemon(("--config", path))
    _poll(lambda: daemon.output.count("prefetch done") >= 2, "both prefetch rounds")
    for name in [*tagged, explicit]:
        aws.sm.put_secret_value(SecretId=name, SecretString="new")
    for name in tagged:
        answer = daemon.secret(name)
        assert answer.json()["SecretString"] == f"old-{name}" and answer.headers["X-Cache"] == "hit"
    assert daemon.secret(explicit).json()["SecretString"] == "old-explicit"
    assert proxy.count_matching(unique, "GetSecretValue") == 0
    assert proxy.count_matching(f"{unique}-prefix-only") == 0  # never fetched
    # The missing one did not crash anything: it is a plain 400 when read.
    assert daemon.secret(f"{unique}-missing").status_code == 400
    assert daemon.proc.poll() is None


def test_prefetch_by_tag_is_bounded_by_the_buffer_ratio_and_works_from_the_environment(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, unique: str) -> None:
    tag = f"env-{unique}"
    for index in range(4):
        aws.sm.create_secret(Name=f"{unique}-b{index}", SecretString="v",
                             Tags=[{"Key": tag, "Value": "x"}])
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_PREFETCH=f"secret-tag:{tag}",
                          PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE="4")
    _poll(lambda: "prefetch done" in daemon.output, "the tag prefetch")
    hits = [daemon.secret(f"{unique}-b{index}").headers["X-Cache"] for index in range(4)]
    # The default buffer ratio, 0.8 of a 4-item cache: 3 are prefetched, the fourth is a miss.
    assert sorted(hits) == ["hit", "hit", "hit", "miss"]


# -- role chaining --------------------------------------------------------------------------------

def test_role_chained_reads_are_kept_apart_per_role(start_daemon: StartDaemon, aws: Aws,
                                                    moto_url: str, proxy: FaultProxy,
                                                    unique: str) -> None:
    name = f"{unique}-shared"
    aws.sm.create_secret(Name=name, SecretString="default-account-value")
    other, third = _role(OTHER_ACCOUNT), _role(THIRD_ACCOUNT)
    _as_role(moto_url, other, "secretsmanager").create_secret(  # type: ignore[attr-defined]
        Name=name, SecretString="other-account-value")
    _as_role(moto_url, third, "secretsmanager").create_secret(  # type: ignore[attr-defined]
        Name=name, SecretString="third-account-value")
    parameter = f"/{unique}/shared"
    aws.ssm.put_parameter(Name=parameter, Type="String", Value="default-parameter")
    _as_role(moto_url, other, "ssm").put_parameter(  # type: ignore[attr-defined]
        Name=parameter, Type="String", Value="other-parameter")
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL="debug")
    before = proxy.count_api("AssumeRole")
    assert daemon.secret(name).json()["SecretString"] == "default-account-value"
    assert daemon.secret(name, roleArn=other).json()["SecretString"] == "other-account-value"
    assert daemon.secret(name, roleArn=third).json()["SecretString"] == "third-account-value"
    again = daemon.secret(name)
    assert again.json()["SecretString"] == "default-account-value"
    assert again.headers["X-Cache"] == "hit"
    assert daemon.secret(name, roleArn=other).headers["X-Cache"] == "hit"
    assert daemon.get(f"/v1/{name}", params={"roleArn": other}).json()["SecretString"] == \
        "other-account-value"
    assert daemon.secret(name, roleArn=other, refreshNow="true").json()["SecretString"] == \
        "other-account-value"
    assert daemon.param(parameter, roleArn=other).json()["Parameter"]["Value"] == \
        "other-parameter"
    assert daemon.param(parameter).json()["Parameter"]["Value"] == "default-parameter"
    batch = daemon.get("/secretsmanager/batch", params={"secretId": name, "roleArn": third})
    assert batch.json()["SecretValues"][0]["SecretString"] == "third-account-value"
    assert proxy.count_api("AssumeRole") == before + 2  # once per role, then cached
    assert "api=assume_role" in daemon.output  # DEBUG logs every call, never a value
    for value in ("default-account-value", "other-account-value", "third-account-value",
                  "other-parameter", "default-parameter"):
        assert value not in daemon.output


def test_role_errors_are_the_agents(start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy,
                                    rules: list[Rule], home: Path, unique: str) -> None:
    name = f"{unique}-roles"
    aws.sm.create_secret(Name=name, SecretString="v")
    daemon = start_daemon(("--config", _write(home, unique, "max_roles = 1\n")))
    before = len(proxy.calls)
    malformed = daemon.secret(name, roleArn="arn:aws:iam::12:role/short-account")
    assert malformed.status_code == 400 and "roleArn" in malformed.json()["message"]
    assert daemon.secret(name, roleArn="not-an-arn").status_code == 400
    assert len(proxy.calls) == before  # refused before any AWS call
    denied_role = _role(THIRD_ACCOUNT, f"denied-{unique}")
    rules.append(proxy.add(Rule(denied_role, "error", status=403, code="AccessDenied",
                                apis=("AssumeRole",))))
    denied = daemon.secret(name, roleArn=denied_role)
    assert denied.status_code == 403 and denied.json()["__type"] == "AccessDeniedException"
    assert daemon.secret(name, roleArn=_role(OTHER_ACCOUNT)).status_code == 400  # not there
    over = daemon.secret(name, roleArn=_role(THIRD_ACCOUNT))
    assert over.status_code == 400 and over.json()["__type"] == "MaxRolesExceeded"
    assert daemon.secret(name).status_code == 200  # the default credentials are unaffected


def test_the_providers_command_line_and_check_config(start_daemon: StartDaemon, aws: Aws,
                                                     home: Path, unique: str) -> None:
    name = f"{unique}-cli"
    aws.sm.create_secret(Name=name, SecretString="v")
    path = _write(home, unique, "[capabilities.secrets_manager.cache]\nttl_seconds = 60\n")
    daemon = start_daemon(("sm", "start", "--config", path))
    assert daemon.secret(name).status_code == 200
    assert "secrets_ttl_secs=60" in daemon.output
    checked = start_daemon(("--check-config", path), wait=False)
    assert checked.finish() == 0 and "valid" in checked.output
    bad = _write(home, unique + "-bad", "max_roles = 0\n")
    refused = start_daemon(("--check-config", bad), wait=False)
    assert refused.finish() == 2
    assert "max_roles = 0 is invalid: expected a whole number from 1 to 20" in refused.output
