"""Lambda mode against a fake Extensions API: lifecycle, readiness during INIT, prefetch."""

from __future__ import annotations

import signal
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
        deadline_at = time.monotonic() + 15
        while proxy.count(name) == 0:
            assert time.monotonic() < deadline_at, "the read never reached AWS"
            time.sleep(0.01)
        deadline = api.shutdown()
        api.kill_at_deadline(daemon.proc.pid, deadline)
        reader.join(5)
        assert daemon.finish(timeout=5) == 0
        assert not api.killed
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
    assert api.polling.wait(10)  # the daemon's long-poll is pending at the API
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


def test_init_ends_and_invokes_complete_while_the_daemon_starts(
        start_lambda: StartLambda, aws: Aws, unique: str) -> None:
    """Early INIT: the first next comes right after register; an invoke is acknowledged at
    once (test_init_policy: where the policy picks it)."""
    name = f"/{unique}/early"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    daemon, api = start_lambda(wait=False, PARAMETERS_SECRETS_EXTENSION_INIT_MODE="early")
    api.invoke()
    assert api.init_ended.wait(10)
    deadline = time.monotonic() + 10
    while api.invokes_completed < 1:
        assert time.monotonic() < deadline, "the invoke was never acknowledged"
        time.sleep(0.01)
    daemon.wait_ready()
    assert daemon.param(name).status_code == 200
    api.shutdown("SandboxTerminated")
    assert daemon.finish(timeout=5) == 0
    assert "reason=sandboxterminated" in daemon.output


@pytest.mark.parametrize("run", range(10))  # "in every one of 10 runs"
def test_reads_of_prefetched_names_join_the_batch(run: int, start_lambda: StartLambda,
                                                  aws: Aws, proxy: FaultProxy,
                                                  rules: list[Rule], unique: str) -> None:
    names = [f"/{unique}/p{index}" for index in range(3)]
    for name in names:
        aws.ssm.put_parameter(Name=name, Type="String", Value=f"value of {name}")
    gate = proxy.add(Rule(match=unique, kind="gate", apis=("GetParameters",)))
    rules.append(gate)
    daemon, api = start_lambda(
        PARAMETERS_SECRETS_EXTENSION_PREFETCH=",".join(f"ssm:{name}" for name in names))
    api.invoke()  # the function's INIT does nothing: the first invoke comes at once
    proxy.wait_held(gate, 1)  # the batch is out, and AWS holds it
    results: list[requests.Response] = []
    readers = [threading.Thread(target=lambda n=name: results.append(daemon.param(n)))
               for name in names]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and proxy.count_matching(unique, "GetParameter") == 0:
        time.sleep(0.01)  # time for a wrong single call to show up at the proxy
    proxy.release(gate)
    for reader in readers:
        reader.join(10)
    assert sorted(r.json()["Parameter"]["Value"] for r in results) == \
        sorted(f"value of {name}" for name in names)
    assert proxy.count_matching(unique, "GetParameter") == 0
    assert proxy.count_matching(unique, "GetParameters") == 1


def test_provisioned_concurrency_holds_init_for_prefetch(
        start_lambda: StartLambda, aws: Aws, proxy: FaultProxy, rules: list[Rule],
        unique: str) -> None:
    name = f"/{unique}/warm"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    gate = proxy.add(Rule(match=unique, kind="gate"))
    rules.append(gate)
    daemon, api = start_lambda(wait=False, PARAMETERS_SECRETS_EXTENSION_PREFETCH=f"ssm:{name}",
                               AWS_LAMBDA_INITIALIZATION_TYPE="provisioned-concurrency")
    proxy.wait_held(gate, 1)
    assert api.first_next_at is None  # INIT waits for the prefetch
    proxy.release(gate)
    assert api.init_ended.wait(10)
    daemon.wait_ready()
    assert daemon.param(name).headers["X-Cache"] == "hit"


def test_managed_instances_register_shutdown_only_and_serve_concurrently(
        start_daemon: StartDaemon, aws: Aws, unique: str) -> None:
    name = f"/{unique}/managed"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    port = free_port()
    api = FakeExtensionsApi(check_port=port, managed=True).start()
    try:
        daemon = start_daemon(port=str(port), AWS_LAMBDA_RUNTIME_API=api.address,
                              AWS_LAMBDA_INITIALIZATION_TYPE="lambda-managed-instances")
        assert [r.events for r in api.registrations] == [["SHUTDOWN"]]
        assert not api.refused_registrations
        results: list[int] = []
        readers = [threading.Thread(target=lambda: results.append(daemon.param(name).status_code))
                   for _ in range(20)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(10)
        assert results == [200] * 20
        api.shutdown()
        assert daemon.finish(timeout=5) == 0
    finally:
        api.stop()


def test_a_refused_invoke_registration_is_retried_without_it(start_daemon: StartDaemon) -> None:
    port = free_port()
    api = FakeExtensionsApi(check_port=port, managed=True).start()
    try:
        daemon = start_daemon(port=str(port), AWS_LAMBDA_RUNTIME_API=api.address)
        assert api.refused_registrations == [["INVOKE", "SHUTDOWN"]]
        assert [r.events for r in api.registrations] == [["SHUTDOWN"]]
        api.shutdown()
        assert daemon.finish(timeout=5) == 0
    finally:
        api.stop()


def test_sigterm_ends_lambda_mode_promptly(start_lambda: StartLambda) -> None:
    daemon, api = start_lambda()
    assert api.polling.wait(10)
    daemon.proc.send_signal(signal.SIGTERM)
    # Order of magnitude only: before, the process lived until the next event (for ever).
    assert daemon.finish(timeout=5) == 0


def test_malformed_events_never_make_the_loop_spin(start_daemon: StartDaemon) -> None:
    port = free_port()
    api = FakeExtensionsApi(check_port=port, malformed_events=100).start()
    try:
        daemon = start_daemon(wait=False, port=str(port), AWS_LAMBDA_RUNTIME_API=api.address)
        assert daemon.finish(timeout=20) == 1
        assert api.next_calls <= 6
        [report] = api.errors
        assert report.phase == "exit"  # the API already gave it something: INIT was over
    finally:
        api.stop()


def test_a_failure_creating_aws_clients_is_an_init_error(start_daemon: StartDaemon) -> None:
    port = free_port()
    api = FakeExtensionsApi(check_port=port).start()
    try:
        daemon = start_daemon(wait=False, port=str(port), AWS_LAMBDA_RUNTIME_API=api.address,
                              AWS_ENDPOINT_URL="not a url")
        assert daemon.finish(timeout=20) == 1
        [report] = api.errors
        assert report.phase == "init"
        assert "AWS clients could not be created" in report.body["errorMessage"]
    finally:
        api.stop()
