"""The client against the real daemon process and moto: every function, transform, error type
and the decorator; the same values as Powertools; every Python this machine has."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.support.process import REPO, Daemon, free_port
from tests.support.proxy import FaultProxy, Rule

import sidecar_client
from sidecar_client import (
    BadToken,
    DaemonUnavailable,
    GetParameterError,
    ParameterNotFound,
    SecretNotFound,
    Throttled,
    TransformParameterError,
    cached,
    get_parameter,
    get_parameters,
    get_parameters_by_name,
    get_secret,
    get_secrets_by_name,
)
from tests.conftest import FAKE_CREDS, REGION, Aws, StartDaemon

CLIENT = REPO / "client"


@pytest.fixture
def daemon(start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    started = start_daemon()
    monkeypatch.setenv("AWS_TOKEN", started.token)
    monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(started.port))
    yield started


@pytest.fixture
def seeded(aws: Aws, unique: str) -> dict[str, str]:
    names = {"plain": f"/{unique}/app/plain", "json": f"/{unique}/app/config.json",
             "binary": f"/{unique}/app/key.binary", "secure": f"/{unique}/app/db/password",
             "secret": f"{unique}/db", "secret_bin": f"{unique}/cert"}
    aws.ssm.put_parameter(Name=names["plain"], Type="String", Value="plain value")
    aws.ssm.put_parameter(Name=names["json"], Type="String", Value='{"a": [1, 2], "b": "c"}')
    aws.ssm.put_parameter(Name=names["binary"], Type="String",
                          Value=base64.b64encode(b"\x00\x01key").decode())
    aws.ssm.put_parameter(Name=names["secure"], Type="SecureString", Value="s3cr3t")
    aws.sm.create_secret(Name=names["secret"], SecretString='{"user": "app", "password": "pw"}')
    aws.sm.create_secret(Name=names["secret_bin"], SecretBinary=b"\x02cert-bytes")
    return names


def test_get_parameter_and_transforms(daemon: Daemon, seeded: dict[str, str]) -> None:
    assert get_parameter(seeded["plain"]) == "plain value"
    assert get_parameter(seeded["json"], transform="json") == {"a": [1, 2], "b": "c"}
    assert get_parameter(seeded["json"], transform="auto") == {"a": [1, 2], "b": "c"}
    assert get_parameter(seeded["binary"], transform="binary") == b"\x00\x01key"
    assert get_parameter(seeded["binary"], transform="auto") == b"\x00\x01key"
    assert get_parameter(seeded["plain"], transform="auto") == "plain value"
    assert get_parameter(seeded["secure"], decrypt=True) == "s3cr3t"
    assert get_parameter(seeded["secure"], decrypt=False) != "s3cr3t"


def test_force_fetch_and_max_age_reach_the_daemon(daemon: Daemon, aws: Aws, proxy: FaultProxy,
                                                  seeded: dict[str, str]) -> None:
    name = seeded["plain"]
    get_parameter(name)
    get_parameter(name)
    assert proxy.count(name, "GetParameter") == 1  # the daemon's cache
    aws.ssm.put_parameter(Name=name, Type="String", Value="rotated", Overwrite=True)
    assert get_parameter(name, force_fetch=True) == "rotated"
    assert get_parameter(name, max_age=0) == "rotated"
    assert proxy.count(name, "GetParameter") == 3


def test_get_parameters_by_path(daemon: Daemon, seeded: dict[str, str], unique: str) -> None:
    values = get_parameters(f"/{unique}/app", decrypt=True)
    assert values["plain"] == "plain value"
    assert values["db/password"] == "s3cr3t"
    flat = get_parameters(f"/{unique}/app", recursive=False)
    assert "db/password" not in flat
    parsed = get_parameters(f"/{unique}/app", transform="auto")
    assert parsed["config.json"] == {"a": [1, 2], "b": "c"}
    assert parsed["key.binary"] == b"\x00\x01key"
    broken = get_parameters(f"/{unique}/app", transform="json")  # not every value is JSON
    assert broken["plain"] is None and broken["config.json"] == {"a": [1, 2], "b": "c"}
    with pytest.raises(TransformParameterError):
        get_parameters(f"/{unique}/app", transform="json", raise_on_transform_error=True)


def test_get_parameters_by_name(daemon: Daemon, seeded: dict[str, str], unique: str) -> None:
    values = get_parameters_by_name({seeded["plain"]: {}, seeded["json"]: {"transform": "json"},
                                     seeded["secure"]: {"decrypt": True}})
    assert values == {seeded["plain"]: "plain value", seeded["json"]: {"a": [1, 2], "b": "c"},
                      seeded["secure"]: "s3cr3t"}
    missing = f"/{unique}/nope"
    with pytest.raises(GetParameterError):
        get_parameters_by_name({seeded["plain"]: {}, missing: {}})
    partial = get_parameters_by_name({seeded["plain"]: {}, missing: {}}, raise_on_error=False)
    assert partial[seeded["plain"]] == "plain value" and partial["_errors"] == [missing]


def test_secrets(daemon: Daemon, seeded: dict[str, str], unique: str) -> None:
    assert get_secret(seeded["secret"]) == '{"user": "app", "password": "pw"}'
    assert get_secret(seeded["secret"], transform="json") == {"user": "app", "password": "pw"}
    assert get_secret(seeded["secret_bin"]) == b"\x02cert-bytes"
    values = get_secrets_by_name([seeded["secret"], seeded["secret_bin"]])
    assert values == {seeded["secret"]: '{"user": "app", "password": "pw"}',
                      seeded["secret_bin"]: b"\x02cert-bytes"}
    with pytest.raises(SecretNotFound):
        get_secret(f"{unique}/missing")


def test_typed_errors(daemon: Daemon, proxy: FaultProxy, rules: list[Rule], unique: str,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ParameterNotFound) as missing:
        get_parameter(f"/{unique}/missing")
    assert missing.value.code == "ParameterNotFound" and missing.value.status == 400
    with pytest.raises(TransformParameterError):
        get_parameter(f"/{unique}/missing", transform="yaml")
    rules.append(proxy.add(Rule(match=f"/{unique}/throttled", kind="throttle")))
    with pytest.raises(Throttled):
        get_parameter(f"/{unique}/throttled")
    monkeypatch.setenv("AWS_TOKEN", "wrong-token")
    with pytest.raises(BadToken) as bad:
        get_parameter(f"/{unique}/missing")
    assert "wrong-token" not in str(bad.value)
    monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(free_port()))
    sidecar_client.transport().startup_wait = 0.2
    try:
        with pytest.raises(DaemonUnavailable):
            get_parameter(f"/{unique}/missing")
    finally:
        sidecar_client.transport().startup_wait = 2.0


def test_token_from_a_file(daemon: Daemon, seeded: dict[str, str], tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(daemon.token + "\n")
    monkeypatch.setenv("AWS_TOKEN", f"file://{token_file}")
    assert get_parameter(seeded["plain"]) == "plain value"


def test_decorator_puts_values_on_the_context(daemon: Daemon, seeded: dict[str, str]) -> None:
    class Context:
        pass

    @cached(parameter=seeded["json"], transform="json", entry_name="config")
    @cached(secret=seeded["secret"], transform="json")
    def handler(event: dict[str, Any], context: Any) -> tuple[Any, Any]:
        return context.config, context.db

    config, db = handler({}, Context())
    assert config == {"a": [1, 2], "b": "c"}
    assert db == {"user": "app", "password": "pw"}
    with pytest.raises(ValueError):
        cached()


def test_same_values_as_powertools(daemon: Daemon, seeded: dict[str, str], moto_url: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_lambda_powertools.utilities import parameters as powertools

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)  # Powertools talks to moto directly
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name, value in FAKE_CREDS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(powertools.base, "DEFAULT_PROVIDERS", {})
    boto3.setup_default_session()
    for name, transform in ((seeded["plain"], None), (seeded["json"], "json"),
                            (seeded["json"], "auto"), (seeded["binary"], "binary"),
                            (seeded["binary"], "auto"), (seeded["plain"], "auto")):
        assert get_parameter(name, transform=transform) == \
            powertools.get_parameter(name, transform=transform,  # type: ignore[arg-type]
                                     force_fetch=True), name
    assert get_parameter(seeded["secure"], decrypt=True) == \
        powertools.get_parameter(seeded["secure"], decrypt=True, force_fetch=True)
    for name, transform in ((seeded["secret"], None), (seeded["secret"], "json"),
                            (seeded["secret_bin"], None)):
        assert get_secret(name, transform=transform) == \
            powertools.get_secret(name, transform=transform,  # type: ignore[arg-type]
                                  force_fetch=True)
    path = seeded["plain"].rsplit("/", 1)[0]
    assert get_parameters(path, transform="auto", decrypt=True) == \
        powertools.get_parameters(path, transform="auto", decrypt=True, force_fetch=True)


def _interpreters() -> list[str]:
    """A working interpreter of each version the client supports that this machine has (at
    least the one running the tests)."""
    sys.path.insert(0, str(REPO / "scripts"))
    from build_layer import _working_interpreter

    found = [_working_interpreter(v) for v in ("3.9", "3.10", "3.11", "3.12", "3.13")]
    return [python for python in found if python] or [sys.executable]


SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from sidecar_client import get_parameter, get_secret, ParameterNotFound
names = json.loads(sys.argv[2])
assert get_parameter(names["json"], transform="json") == {"a": [1, 2], "b": "c"}
assert get_secret(names["secret_bin"]) == b"\\x02cert-bytes"
try:
    get_parameter(names["plain"] + "-missing")
except ParameterNotFound:
    print("ok", sys.version_info[:2])
"""


@pytest.mark.parametrize("python", _interpreters())
def test_every_python_on_this_machine(python: str, daemon: Daemon,
                                      seeded: dict[str, str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "AWS_TOKEN": daemon.token,
           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(daemon.port)}
    # -S: no site-packages, so only the standard library and the client are importable.
    done = subprocess.run([python, "-S", "-c", SCRIPT, str(CLIENT), json.dumps(seeded)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


def test_pydantic_settings_sources(daemon: Daemon, aws: Aws, unique: str) -> None:
    from pydantic import BaseModel, SecretStr
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

    from sidecar_client.pydantic_sources import (
        SidecarParameterStoreSource,
        SidecarSecretsManagerSource,
    )

    aws.ssm.put_parameter(Name=f"/{unique}/svc/host", Type="String", Value="db.internal")
    aws.ssm.put_parameter(Name=f"/{unique}/svc/db/password", Type="SecureString", Value="pw-1")
    aws.sm.create_secret(Name=f"{unique}/svc-secret", SecretString='{"api_key": "k-1"}')

    class Db(BaseModel):
        password: SecretStr

    class Settings(BaseSettings):
        host: str
        db: Db
        api_key: SecretStr

        @classmethod
        def settings_customise_sources(
                cls, settings_cls: type[BaseSettings], *args: PydanticBaseSettingsSource,
                **kwargs: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
            return (SidecarParameterStoreSource(settings_cls, f"/{unique}/svc", max_age=0),
                    SidecarSecretsManagerSource(settings_cls, f"{unique}/svc-secret",
                                                max_age=0))

    settings = Settings()  # type: ignore[call-arg]
    assert settings.host == "db.internal"
    assert settings.db.password.get_secret_value() == "pw-1"
    assert settings.api_key.get_secret_value() == "k-1"
    assert "pw-1" not in repr(settings)
    aws.ssm.put_parameter(Name=f"/{unique}/svc/db/password", Type="SecureString", Value="pw-2",
                          Overwrite=True)
    assert Settings().db.password.get_secret_value() == "pw-2"  # type: ignore[call-arg]


def test_role_arn_reads_as_another_role(daemon: Daemon, aws: Aws, moto_url: str,
                                        unique: str) -> None:
    role = "arn:aws:iam::333333333333:role/client-reader"
    sts = boto3.client("sts", region_name=REGION, endpoint_url=moto_url, **{
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
    found = sts.assume_role(RoleArn=role, RoleSessionName="tests")["Credentials"]
    kwargs = {"region_name": REGION, "endpoint_url": moto_url,
              "aws_access_key_id": found["AccessKeyId"],
              "aws_secret_access_key": found["SecretAccessKey"],
              "aws_session_token": found["SessionToken"]}
    name = f"{unique}/by-role"
    aws.sm.create_secret(Name=name, SecretString="mine")
    boto3.client("secretsmanager", **kwargs).create_secret(Name=name, SecretString="theirs")
    boto3.client("ssm", **kwargs).put_parameter(Name=f"/{name}", Type="String", Value="p")
    assert get_secret(name) == "mine"
    assert get_secret(name, role_arn=role) == "theirs"
    assert get_secrets_by_name([name], role_arn=role) == {name: "theirs"}
    assert get_parameter(f"/{name}", role_arn=role) == "p"
    with pytest.raises(ParameterNotFound):
        get_parameter(f"/{name}")
