"""The client's answers (issue 20): group answers mapped back to exactly what was asked (S3-5,
F1), options that change the value honoured or refused (F3), Powertools' environment variables
read as Powertools reads them (F6), transforms as Powertools does them and ``json_key`` as the
daemon does it (S3-8, F4), typed errors for batch reads (S3-7). Against the real daemon and moto;
Powertools itself (talking to moto directly) is the reference wherever it has the feature.

The findings' exact names (``e3/a``, ``/e12/a``, ``/e4/key.binary``, ...) live in a moto server
of this module's own, so that no other test can have made them first.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from tests.support.process import Daemon
from tests.support.proxy import FaultProxy, Rule

from sidecar_client import (
    GetParameterError,
    InvalidRequest,
    ParameterNotFound,
    SecretNotFound,
    Throttled,
    TransformParameterError,
    UpstreamUnavailable,
    get_parameter,
    get_parameters,
    get_parameters_by_name,
    get_secret,
    get_secrets_by_name,
)
from tests.conftest import FAKE_CREDS, REGION, Aws, StartDaemon

KEY = bytes(range(256)) * 2  # 512 bytes: base64.encodebytes wraps it at 76 columns
SPRING = {"spring.datasource.password": "x", "db": {"host": "h1"},
          "a": {"b.c": {"d": "deep"}}, "list": [{"k": "v0"}, {"k": "v1"}]}


@pytest.fixture(scope="module")
def exact() -> Iterator[dict[str, Any]]:
    """A moto server of this module's own, seeded with the findings' inputs."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    kwargs = {"region_name": REGION, "endpoint_url": url,
              "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    ssm, sm = boto3.client("ssm", **kwargs), boto3.client("secretsmanager", **kwargs)
    seeded: dict[str, Any] = {"url": url}
    for name in ("e3/a", "e3/b", "e3/c"):
        created = sm.create_secret(Name=name, SecretString="value-of-" + name[-1].upper())
        seeded[name] = created["ARN"]
    ssm.put_parameter(Name="/e12/a", Type="String", Value="version-1")
    ssm.put_parameter(Name="/e12/a", Type="String", Value="version-2", Overwrite=True)
    ssm.label_parameter_version(Name="/e12/a", ParameterVersion=1, Labels=["first"])
    ssm.put_parameter(Name="/shared/db-host", Type="String", Value="db.example.internal")
    seeded["db-host"] = ssm.get_parameter(Name="/shared/db-host")["Parameter"]["ARN"]
    created = sm.create_secret(Name="app/key", SecretString="v1-value")
    seeded["v1"] = created["VersionId"]
    sm.put_secret_value(SecretId="app/key", SecretString="v2-value")
    ssm.put_parameter(Name="/e4/key.binary", Type="String",
                      Value=base64.encodebytes(KEY).decode())
    sm.create_secret(Name="e4b/cfg", SecretBinary=b'{"user":"app"}')
    sm.create_secret(Name="f4/spring", SecretString=json.dumps(SPRING))
    yield seeded
    server.stop()


@pytest.fixture
def on_exact(start_daemon: StartDaemon, exact: dict[str, Any],
             monkeypatch: pytest.MonkeyPatch) -> Daemon:
    started = start_daemon(AWS_ENDPOINT_URL=exact["url"])
    monkeypatch.setenv("AWS_TOKEN", started.token)
    monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(started.port))
    return started


@pytest.fixture
def daemon(start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch) -> Daemon:
    """A daemon behind the fault proxy (for upstream call counts and faults)."""
    started = start_daemon()
    monkeypatch.setenv("AWS_TOKEN", started.token)
    monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(started.port))
    return started


@pytest.fixture
def powertools(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Powertools' parameters module, talking to moto directly (``point`` says which moto). Its
    providers keep their boto3 clients, so they are dropped before and after."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters import constants

    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name, value in FAKE_CREDS.items():
        monkeypatch.setenv(name, value)

    def point(url: str) -> Any:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        boto3.setup_default_session()
        constants.DEFAULT_PROVIDERS.clear()
        return parameters

    yield point
    constants.DEFAULT_PROVIDERS.clear()


# S3-5, F1: group answers keyed as asked


def test_repeated_secret_names_keep_their_values(on_exact: Daemon) -> None:
    """S3-5: a repeated name used to shift every later value onto the wrong name."""
    assert get_secrets_by_name(["e3/a", "e3/a", "e3/b", "e3/c"]) == {
        "e3/a": "value-of-A", "e3/b": "value-of-B", "e3/c": "value-of-C"}
    assert get_secrets_by_name(["e3/c", "e3/a", "e3/c"]) == {"e3/c": "value-of-C",
                                                             "e3/a": "value-of-A"}


def test_secrets_asked_by_arn_are_keyed_by_the_arn(on_exact: Daemon,
                                                   exact: dict[str, Any]) -> None:
    arn = exact["e3/b"]
    assert get_secrets_by_name(["e3/a", arn, "e3/b"]) == {
        "e3/a": "value-of-A", arn: "value-of-B", "e3/b": "value-of-B"}


def test_secrets_asked_by_partial_arn(on_exact: Daemon, exact: dict[str, Any]) -> None:
    """The ARN without AWS's ``-XXXXXX`` suffix, keyed as asked (here the batch's member is the
    single read's cache entry, so this is the client's mapping alone)."""
    partial = exact["e3/c"].rsplit("-", 1)[0]
    assert get_secret(partial) == "value-of-C"
    assert get_secrets_by_name([partial, "e3/a", partial]) == {partial: "value-of-C",
                                                               "e3/a": "value-of-A"}


def test_partial_arn_in_a_batch_that_asks_aws(on_exact: Daemon, exact: dict[str, Any]) -> None:
    partial = exact["e3/b"].rsplit("-", 1)[0]
    assert get_secrets_by_name([partial, "e3/a", exact["e3/b"]], force_fetch=True) == {
        partial: "value-of-B", "e3/a": "value-of-A", exact["e3/b"]: "value-of-B"}


def test_a_version_and_the_latest_in_one_call(on_exact: Daemon) -> None:
    """S3-5: moto does not echo ``Selector``; ``/e12/a`` used to receive version 1's value."""
    assert get_parameters_by_name({"/e12/a": {}, "/e12/a:1": {}}, raise_on_error=False) == {
        "/e12/a": "version-2", "/e12/a:1": "version-1", "_errors": []}
    assert get_parameters_by_name({"/e12/a:1": {}, "/e12/a": {}, "/e12/a:first": {},
                                   "/e12/a:2": {}}) == {
        "/e12/a:1": "version-1", "/e12/a": "version-2", "/e12/a:first": "version-1",
        "/e12/a:2": "version-2"}


def test_parameters_asked_by_arn(on_exact: Daemon, exact: dict[str, Any]) -> None:
    """F1: an ARN used to be reported missing."""
    arn = exact["db-host"]
    assert get_parameters_by_name({arn: {}}) == {arn: "db.example.internal"}
    mixed = get_parameters_by_name({arn: {}, "/shared/db-host": {}, f"{arn}:1": {},
                                    "/shared/nope": {}, "/e12/a:1": {}}, raise_on_error=False)
    assert mixed == {arn: "db.example.internal", "/shared/db-host": "db.example.internal",
                     f"{arn}:1": "db.example.internal", "/e12/a:1": "version-1",
                     "_errors": ["/shared/nope"]}
    with pytest.raises(ParameterNotFound) as missing:
        get_parameters_by_name({arn: {}, "/shared/nope": {}, "/e12/a:9": {}})
    assert "/shared/nope" in str(missing.value) and "/e12/a:9" in str(missing.value)


def test_many_names_across_batches(on_exact: Daemon, exact: dict[str, Any]) -> None:
    """More names than one batch read takes, with options splitting them into groups."""
    asked: dict[str, Any] = {f"/e12/a:{1 + i % 2}": {} for i in range(2)}
    asked.update({f"/missing/{i}": {"decrypt": i % 2 == 0} for i in range(120)})
    asked[exact["db-host"]] = {"decrypt": True}
    found = get_parameters_by_name(asked, raise_on_error=False)
    errors: Any = found.pop("_errors")
    assert sorted(errors) == sorted(f"/missing/{i}" for i in range(120))
    assert found == {"/e12/a:1": "version-1", "/e12/a:2": "version-2",
                     exact["db-host"]: "db.example.internal"}


def test_errors_key_is_refused_in_graceful_mode(on_exact: Daemon) -> None:
    with pytest.raises(InvalidRequest):
        get_parameters_by_name({"_errors": {}}, raise_on_error=False)


# S3-7 (the client's side): batch failures are typed


def test_batch_failures_are_typed(daemon: Daemon, aws: Aws, proxy: FaultProxy,
                                  rules: list[Rule], unique: str) -> None:
    with pytest.raises(SecretNotFound) as missing:
        get_secrets_by_name([f"{unique}/nope"])
    assert missing.value.code == "ResourceNotFoundException"
    rules.append(proxy.add(Rule(match=f"{unique}/throttled", kind="throttle")))
    with pytest.raises(Throttled):
        get_secrets_by_name([f"{unique}/throttled-a", f"{unique}/throttled-b"])
    with pytest.raises(Throttled):
        get_parameters_by_name({f"/{unique}/throttled-a": {}, f"/{unique}/throttled-b": {}})
    rules.append(proxy.add(Rule(match=f"{unique}/down", kind="error500")))
    with pytest.raises(UpstreamUnavailable):
        get_secrets_by_name([f"{unique}/down"])
    with pytest.raises(UpstreamUnavailable):
        get_parameters_by_name({f"/{unique}/down": {}}, raise_on_error=False)
    with pytest.raises(GetParameterError):
        get_secrets_by_name([])


# F3: options that change the value


def test_version_id_and_stage_are_honoured(on_exact: Daemon, exact: dict[str, Any],
                                           powertools: Any) -> None:
    v1 = exact["v1"]
    assert get_secret("app/key") == "v2-value"
    assert get_secret("app/key", VersionId=v1) == "v1-value"
    assert get_secret("app/key", VersionStage="AWSPREVIOUS") == "v1-value"
    assert get_secret("app/key", VersionStage="AWSCURRENT") == "v2-value"
    assert get_secret("app/key", VersionId=v1, VersionStage="AWSPREVIOUS") == "v1-value"
    assert get_secret("app/key", SecretId="ignored, as Powertools does") == "v2-value"
    with pytest.raises(SecretNotFound):
        get_secret("app/key", VersionStage="NOSUCHSTAGE")
    reference = powertools(exact["url"])
    for options in ({"VersionId": v1}, {"VersionStage": "AWSPREVIOUS"}, {}):
        assert get_secret("app/key", **options) == \
            reference.get_secret("app/key", force_fetch=True, **options), options


@pytest.mark.parametrize(("call", "option"), [
    (lambda: get_secret("app/key", VersionIds=["x"]), "VersionIds"),
    (lambda: get_secret("app/key", versionStage="AWSPREVIOUS"), "versionStage"),
    (lambda: get_parameter("/e12/a", Version=1), "Version"),
    (lambda: get_parameter("/e12/a", Label="first"), "Label"),
    (lambda: get_parameters("/e12", NextToken="x"), "NextToken"),
    (lambda: get_parameters("/e12", PaginationConfig={"MaxItems": 1}), "PaginationConfig"),
    (lambda: get_parameters("/e12", ParameterFilters=[
        {"Key": "tag:env", "Values": ["prod"]}]), "tag:env"),
    (lambda: get_parameters("/e12", ParameterFilters=[
        {"Key": "Type", "Option": "BeginsWith", "Values": ["Secure"]}]), "Type"),
    (lambda: get_parameters("/e12", ParameterFilters=[
        {"Key": "Type", "Values": ["String", "SecureString"]}]), "Type"),
    (lambda: get_secrets_by_name(["e3/a"], Filters=[{"Key": "tag-key", "Values": ["x"]}]),
     "Filters"),
])
def test_options_that_cannot_be_honoured_raise(on_exact: Daemon, call: Any,
                                               option: str) -> None:
    with pytest.raises(TypeError, match=option):
        call()


def test_harmless_options_are_accepted(on_exact: Daemon) -> None:
    """Options Powertools overrides itself, or that only size its pages, change nothing."""
    assert get_parameter("/e12/a", Name="/other", WithDecryption=True) == "version-2"
    assert get_parameters("/e12", MaxResults=1, PaginationConfig={"PageSize": 1},
                          Recursive=False, Path="/other") == {"a": "version-2"}
    assert get_secrets_by_name(["e3/a"], SecretIdList=["e3/b"], NextToken="x",
                               MaxResults=5) == {"e3/a": "value-of-A"}


def test_parameter_filters_are_honoured(daemon: Daemon, aws: Aws, unique: str, moto_url: str,
                                        powertools: Any) -> None:
    path = f"/{unique}/f"
    aws.ssm.put_parameter(Name=f"{path}/plain", Type="String", Value="p")
    aws.ssm.put_parameter(Name=f"{path}/secure", Type="SecureString", Value="s")
    aws.ssm.put_parameter(Name=f"{path}/other-key", Type="SecureString", Value="o",
                          KeyId="alias/other")
    aws.ssm.put_parameter(Name=f"{path}/labelled", Type="String", Value="l1")
    aws.ssm.put_parameter(Name=f"{path}/labelled", Type="String", Value="l2", Overwrite=True)
    aws.ssm.label_parameter_version(Name=f"{path}/labelled", ParameterVersion=1,
                                    Labels=["stable"])
    secure = [{"Key": "Type", "Option": "Equals", "Values": ["SecureString"]}]
    assert get_parameters(path, decrypt=True, ParameterFilters=secure) == {"secure": "s",
                                                                           "other-key": "o"}
    by_key = [{"Key": "KeyId", "Values": ["alias/other"]}]
    assert get_parameters(path, decrypt=True, ParameterFilters=by_key) == {"other-key": "o"}
    both = [*secure, {"Key": "KeyId", "Option": "Equals", "Values": ["alias/other"]}]
    labelled = [{"Key": "Label", "Values": ["stable"]}]  # moto: no parameter matches a Label
    reference = powertools(moto_url)
    for filters in (secure, by_key, both, labelled):
        assert get_parameters(path, decrypt=True, ParameterFilters=filters) == \
            reference.get_parameters(path, decrypt=True, force_fetch=True,
                                     ParameterFilters=filters), filters


# F6: Powertools' environment variables


def test_max_age_variable(daemon: Daemon, aws: Aws, proxy: FaultProxy, unique: str,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    name, secret = f"/{unique}/aged", f"{unique}/aged"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    aws.sm.create_secret(Name=secret, SecretString="s")
    get_parameter(name)
    get_parameter(name)
    assert proxy.count(name, "GetParameter") == 1  # unset: the daemon's TTL
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "0")
    get_parameter(name)
    get_parameters_by_name({name: {}})
    assert get_secret(secret) == "s"
    get_secrets_by_name([secret])
    assert proxy.count(name) == 3 and proxy.count(secret) == 2  # 0: always fetched
    assert get_parameter(name, max_age=300) == "v"  # the argument wins over the variable
    assert get_parameters_by_name({name: {"max_age": 300}}) == {name: "v"}
    assert proxy.count(name) == 3
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", " 300 ")  # int() takes the spaces
    get_parameter(name)
    assert proxy.count(name) == 3
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "-5")  # Powertools: cache nothing
    get_parameter(name)
    assert proxy.count(name) == 4
    for bad in ("5s", "", "1.5"):
        monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", bad)
        with pytest.raises(ValueError, match="POWERTOOLS_PARAMETERS_MAX_AGE"):
            get_parameter(name)
    assert get_parameter(name, max_age=10**9) == "v"  # past the daemon's day: its bound


def test_decrypt_variable(daemon: Daemon, aws: Aws, unique: str,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"/{unique}/secure"
    aws.ssm.put_parameter(Name=name, Type="SecureString", Value="s3cr3t")
    for truthy in ("true", "1", "yes", "On"):
        monkeypatch.setenv("POWERTOOLS_PARAMETERS_SSM_DECRYPT", truthy)
        assert get_parameter(name) == "s3cr3t", truthy
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_SSM_DECRYPT", "no")
    assert get_parameter(name) != "s3cr3t"
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_SSM_DECRYPT", "maybe")
    with pytest.raises(ValueError, match="POWERTOOLS_PARAMETERS_SSM_DECRYPT"):
        get_parameter(name)


# S3-8, F4: transforms


def test_wrapped_base64_and_binary_json(on_exact: Daemon, exact: dict[str, Any],
                                        powertools: Any) -> None:
    assert get_parameter("/e4/key.binary", transform="binary") == KEY
    assert get_parameter("/e4/key.binary", transform="auto") == KEY
    assert get_parameters("/e4/", transform="auto", raise_on_transform_error=True) == \
        {"key.binary": KEY}
    assert get_parameters_by_name({"/e4/key.binary": {"transform": "auto"}}) == \
        {"/e4/key.binary": KEY}
    assert get_secret("e4b/cfg") == b'{"user":"app"}'
    assert get_secret("e4b/cfg", transform="json") == {"user": "app"}
    assert get_secret("e4b/cfg", json_key="user") == "app"
    assert get_secrets_by_name(["e4b/cfg"], transform="json") == {"e4b/cfg": {"user": "app"}}
    reference = powertools(exact["url"])
    assert reference.get_parameter("/e4/key.binary", transform="binary") == KEY
    assert reference.get_parameters("/e4/", transform="auto") == {"key.binary": KEY}
    assert reference.get_secret("e4b/cfg", transform="json") == {"user": "app"}


def test_json_key_with_dots(on_exact: Daemon) -> None:
    """F4: a literal key with dots wins; nested paths, array items and JSON Pointers work."""
    assert get_secret("f4/spring", json_key="spring.datasource.password") == "x"
    assert get_secret("f4/spring", json_key="db.host") == "h1"
    assert get_secret("f4/spring", json_key="db") == {"host": "h1"}
    assert get_secret("f4/spring", json_key="a.b.c.d") == "deep"
    assert get_secret("f4/spring", json_key="list.1.k") == "v1"
    assert get_secret("f4/spring", json_key="/spring.datasource.password") == "x"
    assert get_secret("f4/spring", json_key="/a/b.c/d") == "deep"
    with pytest.raises(TransformParameterError) as missing:
        get_secret("f4/spring", json_key="db.port")
    assert "no key 'port' at 'db'" in str(missing.value)
    assert "h1" not in str(missing.value)  # never a value
    with pytest.raises(TransformParameterError) as scalar:
        get_secret("f4/spring", json_key="db.host.name")
    assert "a string at 'db.host'" in str(scalar.value)
    with pytest.raises(TransformParameterError):
        get_secret("e3/a", json_key="a")  # not JSON
    with pytest.raises(InvalidRequest):
        get_secret("f4/spring", json_key="db..host")


def test_transform_failures_as_powertools(on_exact: Daemon) -> None:
    """A group member that does not transform is None, or raises when asked to."""
    assert get_secrets_by_name(["e3/a", "e4b/cfg"], transform="json") == {
        "e3/a": None, "e4b/cfg": {"user": "app"}}
    with pytest.raises(TransformParameterError):
        get_secrets_by_name(["e3/a"], transform="json", raise_on_transform_error=True)
    assert get_parameters_by_name({"/e12/a": {"transform": "json"}},
                                  raise_on_error=False) == {"/e12/a": None, "_errors": []}
    with pytest.raises(TransformParameterError):
        get_parameters_by_name({"/e12/a": {"transform": "json"}})
    with pytest.raises(TransformParameterError):
        get_parameter("/e12/a", transform="json")
