"""The AppConfig port in Lambda mode (one registration, one loop, one shutdown for both ports;
the prefetch list landing during INIT) and the agent's real clients reading through it
unchanged: Powertools' ``AppConfigExtensionProvider`` and a plain Node ``fetch``."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from aws_lambda_powertools.utilities.parameters import AppConfigExtensionProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from tests.conftest import Aws, StartDaemon
from tests.support.appconfig_fake import LATEST_PATH, SESSION_PATH
from tests.support.appconfig_served import AppConfigAws, Served, StartServed, wait_listening
from tests.support.lambda_api import FakeExtensionsApi
from tests.support.process import free_port
from tests.support.proxy import FaultProxy, Rule

START, LATEST = "StartConfigurationSession", "GetLatestConfiguration"


@pytest.fixture
def extensions_api() -> Iterator[FakeExtensionsApi]:
    api = FakeExtensionsApi().start()
    yield api
    api.stop()


def _lambda(start_daemon: StartDaemon, api: FakeExtensionsApi, appconfig_proxy: FaultProxy,
            wait: bool = True, **env: str) -> Served:
    port, appconfig_port = free_port(), free_port()
    daemon = start_daemon(wait=wait, port=str(port), AWS_LAMBDA_RUNTIME_API=api.address,
                          AWS_ENDPOINT_URL_APPCONFIGDATA=appconfig_proxy.url,
                          AWS_APPCONFIG_EXTENSION_HTTP_PORT=str(appconfig_port), **env)
    return Served(daemon, appconfig_port)


def test_prefetch_list_lands_during_init(start_daemon: StartDaemon,
                                         extensions_api: FakeExtensionsApi,
                                         appconfig_aws: AppConfigAws, unique: str) -> None:
    appconfig_aws.fake.deploy("app", "prod", unique, b"prefetched")
    gate = appconfig_aws.add(Rule(match=SESSION_PATH, kind="gate", apis=("S3.POST",)))
    served = _lambda(start_daemon, extensions_api, appconfig_aws.proxy, wait=False,
                     PARAMETERS_SECRETS_EXTENSION_INIT_MODE="wait",
                     PARAMETERS_SECRETS_EXTENSION_PREFETCH_WAIT_MILLIS="20000",
                     AWS_APPCONFIG_EXTENSION_PREFETCH_LIST=(
                         f"/applications/app/environments/prod/configurations/{unique}"))
    appconfig_aws.proxy.wait_held(gate, 1)  # the prefetch is out, AWS holds it
    assert extensions_api.registered.is_set()
    assert extensions_api.first_next_at is None  # INIT waits for it
    appconfig_aws.proxy.release(gate)
    assert extensions_api.init_ended.wait(10)
    first = served.get("app", "prod", unique)  # the handler's first read
    assert (first.headers["X-Cache"], first.content) == ("hit", b"prefetched")
    assert appconfig_aws.fake.count(START, unique) == 1
    assert appconfig_aws.fake.count(LATEST, unique) == 1
    assert "AppConfig prefetch done items=1 failed=0" in served.daemon.output


def test_both_ports_share_one_registration_and_one_shutdown(
        start_daemon: StartDaemon, extensions_api: FakeExtensionsApi,
        appconfig_aws: AppConfigAws, aws: Aws, unique: str) -> None:
    aws.ssm.put_parameter(Name=f"/{unique}/p", Type="String", Value="parameter")
    appconfig_aws.fake.deploy("app", "prod", unique, b"configuration")
    served = _lambda(start_daemon, extensions_api, appconfig_aws.proxy)
    wait_listening(served.port)
    assert served.daemon.param(f"/{unique}/p").json()["Parameter"]["Value"] == "parameter"
    assert served.get("app", "prod", unique).content == b"configuration"
    assert len(extensions_api.registrations) == 1
    # A read in flight on the AppConfig port when SHUTDOWN comes: it is finished, in time.
    appconfig_aws.fake.deploy("app", "prod", f"{unique}-slow", b"slow")
    appconfig_aws.add(Rule(match=LATEST_PATH, kind="delay", seconds=0.5, apis=("S3.GET",)))
    results: list[requests.Response] = []
    reader = threading.Thread(
        target=lambda: results.append(served.get("app", "prod", f"{unique}-slow")))
    reader.start()
    deadline_at = time.monotonic() + 10
    while appconfig_aws.fake.count(START, f"{unique}-slow") == 0:
        assert time.monotonic() < deadline_at, "the read never reached AppConfig"
        time.sleep(0.01)
    deadline = extensions_api.shutdown()
    extensions_api.kill_at_deadline(served.daemon.proc.pid, deadline)
    reader.join(5)
    assert served.daemon.finish(timeout=5) == 0
    assert not extensions_api.killed
    assert time.time() < deadline
    assert [r.content for r in results] == [b"slow"]
    for port in (served.daemon.port, served.port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_a_taken_port_in_lambda_is_one_warning(start_daemon: StartDaemon,
                                               extensions_api: FakeExtensionsApi,
                                               appconfig_aws: AppConfigAws, aws: Aws,
                                               unique: str) -> None:
    aws.ssm.put_parameter(Name=f"/{unique}/p", Type="String", Value="still served")
    with socket.socket() as holder:  # another extension holds the port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = str(holder.getsockname()[1])
        daemon = start_daemon(port=str(free_port()), AWS_LAMBDA_RUNTIME_API=extensions_api.address,
                              AWS_APPCONFIG_EXTENSION_HTTP_PORT=taken)
        assert daemon.param(f"/{unique}/p").json()["Parameter"]["Value"] == "still served"
        lines = [line for line in daemon.output.splitlines() if "AppConfig port" in line]
        assert len(lines) == 1 and "WARN" in lines[0] and taken in lines[0]


def test_powertools_extension_provider_reads_through_the_port(
        start_served: StartServed, appconfig_aws: AppConfigAws, unique: str) -> None:
    document = {"ui": {"enabled": True}, "beta": {"enabled": False}, "other": {"enabled": True}}
    appconfig_aws.fake.deploy("app", "prod", unique, json.dumps(document).encode())
    served = start_served()
    provider = AppConfigExtensionProvider(environment="prod", application="app",
                                          port=served.port)
    assert provider.get(unique, transform="json") == document
    assert provider.get(unique, transform="json", flag=["ui", "beta"], force_fetch=True) == {
        "ui": {"enabled": True}, "beta": {"enabled": False}}
    with pytest.raises(GetParameterError, match="HTTP 404"):
        provider.get(f"{unique}-missing")


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_node_fetch_reads_through_the_port(start_served: StartServed,
                                           appconfig_aws: AppConfigAws, unique: str) -> None:
    appconfig_aws.fake.deploy("app", "prod", unique, b'{"from": "node"}', label="v1")
    served = start_served()
    script = ("fetch(process.argv[1]).then(async r => process.stdout.write(JSON.stringify("
              "{status: r.status, type: r.headers.get('content-type'), "
              "version: r.headers.get('configuration-version'), body: await r.text()})))")
    url = f"http://localhost:{served.port}/applications/app/environments/prod/" \
          f"configurations/{unique}"
    done = subprocess.run(["node", "-e", script, url], capture_output=True, text=True,
                          timeout=60, check=True)
    assert json.loads(done.stdout) == {"status": 200, "type": "application/json",
                                       "version": "1", "body": '{"from": "node"}'}
