"""Lambda mode against a fake Extensions API: lifecycle, readiness during INIT, prefetch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.conftest import Aws, StartDaemon
from tests.support.lambda_api import FakeExtensionsApi
from tests.support.process import Daemon, free_port
from tests.support.proxy import FaultProxy, Rule

StartLambda = Callable[..., tuple[Daemon, FakeExtensionsApi]]


@pytest.fixture
def start_lambda(start_daemon: StartDaemon) -> Iterator[StartLambda]:
    apis: list[FakeExtensionsApi] = []

    def start(wait: bool = True, **env: str) -> tuple[Daemon, FakeExtensionsApi]:
        port = free_port()
        api = FakeExtensionsApi(check_port=port).start()
        apis.append(api)
        daemon = start_daemon(wait=wait, port=str(port), AWS_LAMBDA_RUNTIME_API=api.address,
                              **env)
        return daemon, api

    yield start
    for api in apis:
        api.stop()


def test_registers_serves_before_invoke_and_exits_on_shutdown(
        start_lambda: StartLambda, aws: Aws, unique: str) -> None:
    name = f"/{unique}/p"
    aws.ssm.put_parameter(Name=name, Type="String", Value="during init")
    daemon, api = start_lambda()
    assert api.registered.wait(10)
    [registration] = api.registrations
    assert registration.name == "parameters-secrets-sidecar"
    assert registration.events == ["INVOKE", "SHUTDOWN"]
    assert registration.headers["Content-Type"] == "application/json"
    # No INVOKE yet: this is the function's INIT phase, and reads already work.
    assert daemon.param(name).json()["Parameter"]["Value"] == "during init"
    for _ in range(3):
        api.invoke()
    assert daemon.param(name).headers["X-Cache"] == "hit"
    deadline = api.shutdown("SPINDOWN")
    assert daemon.finish(timeout=5) == 0
    assert time.time() < deadline
    assert api.next_calls == 4  # one per event: three INVOKEs and the SHUTDOWN
    assert not api.errors
    assert "reason=spindown" in daemon.output


def test_listener_is_open_when_register_arrives(start_lambda: StartLambda) -> None:
    _, api = start_lambda()
    assert api.registered.wait(10)
    assert api.registrations[0].port_open is True


def test_shutdown_finishes_an_in_flight_read(start_lambda: StartLambda, aws: Aws,
                                             proxy: FaultProxy, unique: str) -> None:
    name = f"/{unique}/slow"
    aws.ssm.put_parameter(Name=name, Type="String", Value="finished")
    rule = proxy.add(Rule(match=unique, kind="delay", seconds=0.6))
    try:
        daemon, api = start_lambda()
        results: list[requests.Response] = []
        reader = threading.Thread(target=lambda: results.append(daemon.param(name)))
        reader.start()
        while proxy.count(name) == 0:
            time.sleep(0.01)
        deadline = api.shutdown()
        reader.join(5)
        assert daemon.finish(timeout=5) == 0
        assert time.time() < deadline
    finally:
        proxy.remove(rule)
    assert results[0].status_code == 200
    assert results[0].json()["Parameter"]["Value"] == "finished"


def test_bad_config_reports_init_error(start_lambda: StartLambda) -> None:
    daemon, api = start_lambda(wait=False, SSM_PARAMETER_STORE_TTL="soon")
    assert daemon.finish() != 0
    [report] = api.errors
    assert report.phase == "init"
    assert report.error_type_header == "Extension.ConfigInvalid"
    assert report.body["errorType"] == "Extension.ConfigInvalid"
    assert "SSM_PARAMETER_STORE_TTL" in report.body["errorMessage"]
    assert "SSM_PARAMETER_STORE_TTL='soon'" in daemon.output


def test_exits_non_zero_on_api_500(start_daemon: StartDaemon) -> None:
    port = free_port()
    api = FakeExtensionsApi(check_port=port, fail_next_with=500).start()
    try:
        daemon = start_daemon(wait=False, port=str(port), AWS_LAMBDA_RUNTIME_API=api.address)
        assert daemon.finish(timeout=10) == 1
        assert api.registrations
        assert "Extensions API failed" in daemon.output
    finally:
        api.stop()


def test_exits_non_zero_when_the_api_goes_away(start_daemon: StartDaemon) -> None:
    port = free_port()
    api = FakeExtensionsApi(check_port=port).start()
    daemon = start_daemon(wait=False, port=str(port), AWS_LAMBDA_RUNTIME_API=api.address)
    assert api.registered.wait(10)
    daemon.wait_ready()
    api.stop()
    assert daemon.finish(timeout=10) == 1


def test_prefetch_uses_batch_calls_and_first_reads_hit(start_lambda: StartLambda, aws: Aws,
                                                       proxy: FaultProxy, unique: str) -> None:
    parameters = [f"/{unique}/p{index}" for index in range(25)]
    secrets = [f"{unique}/s{index}" for index in range(25)]
    for name in parameters:
        aws.ssm.put_parameter(Name=name, Type="String", Value=f"value of {name}")
    for name in secrets:
        aws.sm.create_secret(Name=name, SecretString=f"value of {name}")
    spec = ",".join([f"ssm:{name}" for name in parameters] + [f"secret:{name}" for name in secrets]
                    + [f"ssm:/{unique}/missing", f"secret:{unique}/missing"])
    daemon, _ = start_lambda(PARAMETERS_SECRETS_EXTENSION_PREFETCH=spec)
    daemon.wait_for_output("prefetch done")
    assert proxy.count_matching(unique, "GetParameters") <= 3
    assert proxy.count_matching(unique, "BatchGetSecretValue") <= 2
    assert proxy.count_matching(unique, "GetParameter") == 0
    assert proxy.count_matching(unique, "GetSecretValue") == 0
    for name in parameters:
        response = daemon.param(name)
        assert response.headers["X-Cache"] == "hit"
        assert response.json()["Parameter"]["Value"] == f"value of {name}"
    for name in secrets:
        response = daemon.secret(name)
        assert response.headers["X-Cache"] == "hit"
        assert response.json()["SecretString"] == f"value of {name}"
    # What prefetch could not fetch is logged by name and fetched normally on first read.
    assert f"name=/{unique}/missing" in daemon.output
    assert daemon.param(f"/{unique}/missing").json()["__type"] == "ParameterNotFound"


def test_prefetched_selectors_match_reads(start_lambda: StartLambda, aws: Aws,
                                          proxy: FaultProxy, unique: str) -> None:
    name, secret = f"/{unique}/sec", f"{unique}/versioned"
    aws.ssm.put_parameter(Name=name, Type="SecureString", Value="v1")
    aws.ssm.put_parameter(Name=name, Type="SecureString", Value="v2", Overwrite=True)
    aws.sm.create_secret(Name=secret, SecretString="one")
    aws.sm.put_secret_value(SecretId=secret, SecretString="two")
    spec = (f"ssm:{name}?withDecryption=true, ssm:{name}?version=1&withDecryption=true,"
            f"secret:{secret}?versionStage=AWSPREVIOUS")
    daemon, _ = start_lambda(PARAMETERS_SECRETS_EXTENSION_PREFETCH=spec)
    daemon.wait_for_output("prefetch done")
    latest = daemon.param(name, withDecryption="true")
    first = daemon.param(name, version="1", withDecryption="true")
    previous = daemon.secret(secret, versionStage="AWSPREVIOUS")
    assert [r.headers["X-Cache"] for r in (latest, first, previous)] == ["hit"] * 3
    assert latest.json()["Parameter"]["Value"] == "v2"
    assert first.json()["Parameter"]["Value"] == "v1"
    assert previous.json()["SecretString"] == "one"
