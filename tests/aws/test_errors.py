"""Every row of the SPEC error table, over HTTP: status, ``__type``, and a JSON body."""

from __future__ import annotations

import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import RawTestServer, TestClient

from sidecar.aws.upstream import TOTAL_ATTEMPTS, Upstream
from sidecar.cache.resolver import Resolver
from sidecar.config.settings import Settings
from sidecar.http.api import Api
from sidecar.http.token import TokenSource
from tests.conftest import Aws, StartDaemon
from tests.support.process import Daemon, RawResponse, free_port
from tests.support.proxy import FaultProxy, Rule


def assert_error(response: requests.Response | RawResponse, status: int,
                 code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"__type", "message"}
    assert body["__type"] == code
    assert "Traceback" not in response.text
    return body  # type: ignore[no-any-return]


def test_upstream_not_found_errors_pass_through(shared_daemon: Daemon, aws: Aws,
                                                unique: str) -> None:
    body = assert_error(shared_daemon.param(f"/{unique}/missing"), 400, "ParameterNotFound")
    assert unique in body["message"]
    assert_error(shared_daemon.secret(f"{unique}/missing"), 400, "ResourceNotFoundException")
    name = f"/{unique}/one-version"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    assert_error(shared_daemon.param(name, version="7"), 400, "ParameterVersionNotFound")


def test_other_upstream_codes_keep_their_code(shared_daemon: Daemon, proxy: FaultProxy,
                                              rules: list[Rule], unique: str) -> None:
    rules.append(proxy.add(Rule(match=unique, kind="error", status=403,
                               code="AccessDeniedException")))
    body = assert_error(shared_daemon.param(f"/{unique}/denied"), 400, "AccessDeniedException")
    assert "AccessDeniedException" in body["message"]
    assert proxy.count(f"/{unique}/denied") == 1  # not retried


def test_throttling_after_retries(shared_daemon: Daemon, proxy: FaultProxy, rules: list[Rule],
                                  unique: str) -> None:
    rules.append(proxy.add(Rule(match=unique, kind="throttle")))
    name = f"/{unique}/busy"
    assert_error(shared_daemon.param(name), 400, "ThrottlingException")
    assert proxy.count(name) == TOTAL_ATTEMPTS


def test_upstream_5xx_after_retries(shared_daemon: Daemon, proxy: FaultProxy, rules: list[Rule],
                                    unique: str) -> None:
    rules.append(proxy.add(Rule(match=unique, kind="error500")))
    name = f"{unique}/broken"
    assert_error(shared_daemon.secret(name), 500, "InternalServerError")
    assert proxy.count(name) == TOTAL_ATTEMPTS


def test_upstream_timeout_is_504(start_daemon: StartDaemon, proxy: FaultProxy, rules: list[Rule],
                                 unique: str) -> None:
    rules.append(proxy.add(Rule(match=unique, kind="delay", seconds=5)))
    daemon = start_daemon(SSM_PARAMETER_STORE_TIMEOUT_MILLIS="400",
                          SECRETS_MANAGER_TIMEOUT_MILLIS="400")
    assert_error(daemon.param(f"/{unique}/slow"), 504, "UpstreamTimeout")
    assert_error(daemon.secret(f"{unique}/slow"), 504, "UpstreamTimeout")


def test_dropped_connection_is_502(shared_daemon: Daemon, proxy: FaultProxy, rules: list[Rule],
                                   unique: str) -> None:
    rules.append(proxy.add(Rule(match=unique, kind="drop")))
    assert_error(shared_daemon.param(f"/{unique}/dropped"), 502, "UpstreamUnavailable")


def test_unreachable_upstream_is_502(start_daemon: StartDaemon, unique: str) -> None:
    daemon = start_daemon(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    assert_error(daemon.param(f"/{unique}/p"), 502, "UpstreamUnavailable")
    assert daemon.get("/ping").text == "healthy"


def test_missing_credentials_is_500(start_daemon: StartDaemon, unique: str) -> None:
    daemon = start_daemon(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
    body = assert_error(daemon.param(f"/{unique}/p"), 500, "InternalFailure")
    assert "credentials" in body["message"]


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/systemsmanager/parameters/get", 400, "MissingParameter"),
    ("/systemsmanager/parameters/get?name=", 400, "MissingParameter"),
    ("/systemsmanager/parameters/get?name=/a&colour=red", 400, "UnknownParameter"),
    ("/systemsmanager/parameters/get?Name=/a", 400, "UnknownParameter"),
    ("/systemsmanager/parameters/get?name=/a&version=x", 400, "InvalidParameterValue"),
    ("/systemsmanager/parameters/get?name=/a&version=0", 400, "InvalidParameterValue"),
    ("/systemsmanager/parameters/get?name=/a&withDecryption=yes", 400, "InvalidParameterValue"),
    ("/systemsmanager/parameters/get?name=/a&refreshNow=maybe", 400, "InvalidParameterValue"),
    ("/systemsmanager/parameters/get?name=/a&name=/b", 400, "InvalidParameterValue"),
    ("/systemsmanager/parameters/get?name=/a&label=", 400, "InvalidParameterValue"),
    ("/systemsmanager/parameters/get?name=%zz", 400, "InvalidParameterValue"),
    ("/systemsmanager/parameters/get?name=%ff%fe", 400, "InvalidParameterValue"),
    ("/systemsmanager/parameters/get?name=a%0Ab", 400, "InvalidParameterValue"),
    ("/systemsmanager/parameters/get?name=/" + "n" * 2048, 400, "InvalidParameterValue"),
    ("/systemsmanager/parameters/get?name=/a&label=" + "l" * 9000, 414, "InvalidRequest"),
    ("/secretsmanager/get", 400, "MissingParameter"),
    ("/secretsmanager/get?name=x", 400, "UnknownParameter"),
    ("/secrets/get", 400, "MissingParameter"),
    ("/secrets/get?name=a&secretId=b", 400, "InvalidParameterValue"),
    ("/v1/", 400, "MissingParameter"),
    ("/v1/x?secretId=y", 400, "UnknownParameter"),
    ("/nothing/here", 404, "NotFound"),
    ("/", 404, "NotFound"),
    ("/secretsmanager/get/extra", 404, "NotFound"),
])
def test_local_validation(shared_daemon: Daemon, path: str, status: int, code: str) -> None:
    body = assert_error(shared_daemon.raw(path), status, code)
    assert body["message"]


def test_validation_messages_name_the_key(shared_daemon: Daemon) -> None:
    unknown = shared_daemon.get("/systemsmanager/parameters/get?name=/a&colour=red").json()
    assert "colour" in unknown["message"]
    missing = shared_daemon.get("/secretsmanager/get").json()
    assert "secretId" in missing["message"]
    bad = shared_daemon.get("/systemsmanager/parameters/get?name=/a&version=x").json()
    assert "version" in bad["message"]


def test_forwarded_requests_are_refused(shared_daemon: Daemon) -> None:
    response = shared_daemon.get("/systemsmanager/parameters/get?name=/a",
                                 headers={"X-Forwarded-For": "10.0.0.1"})
    assert_error(response, 400, "Forwarded")
    # Checked before the token: even a tokenless forwarded request says "Forwarded".
    assert_error(shared_daemon.get("/secretsmanager/get", token=None,
                                   headers={"X-Forwarded-For": "1.2.3.4"}), 400, "Forwarded")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_other_methods_are_405(shared_daemon: Daemon, method: str) -> None:
    response = shared_daemon.http.request(
        method, shared_daemon.base + "/secretsmanager/get?secretId=x",
        headers={"X-Aws-Parameters-Secrets-Token": shared_daemon.token}, timeout=10)
    assert response.status_code == 405
    if method != "HEAD":
        assert response.json()["__type"] == "MethodNotAllowed"


def test_checks_run_in_spec_order(shared_daemon: Daemon) -> None:
    # No token beats wrong method, wrong method beats unknown path, unknown path beats query.
    no_token = shared_daemon.http.post(shared_daemon.base + "/nowhere", timeout=10)
    assert_error(no_token, 403, "BadToken")
    wrong_method = shared_daemon.http.post(
        shared_daemon.base + "/nowhere?x=1",
        headers={"X-Aws-Parameters-Secrets-Token": shared_daemon.token}, timeout=10)
    assert_error(wrong_method, 405, "MethodNotAllowed")
    assert_error(shared_daemon.raw("/nowhere?bad=%zz"), 404, "NotFound")


def test_a_request_body_is_refused(shared_daemon: Daemon, proxy: FaultProxy,
                                   unique: str) -> None:
    name = f"/{unique}/p"
    response = shared_daemon.http.get(
        shared_daemon.base + f"/systemsmanager/parameters/get?name={name}", data=b"payload",
        headers={"X-Aws-Parameters-Secrets-Token": shared_daemon.token}, timeout=10)
    assert_error(response, 400, "InvalidRequest")
    assert proxy.count(name) == 0


async def test_reads_during_shutdown_are_503() -> None:
    settings = Settings(token="t", token_source="test", region="us-east-1")
    api = Api(TokenSource(settings.token), Resolver(settings, Upstream(settings)))
    api.shutting_down = True
    client: TestClient[web.BaseRequest, None]
    async with TestClient(RawTestServer(api.handle)) as client:
        response = await client.get("/systemsmanager/parameters/get?name=/a",
                                    headers={"X-Aws-Parameters-Secrets-Token": "t"})
        assert response.status == 503
        assert (await response.json())["__type"] == "ShuttingDown"
        assert (await client.get("/ping")).status == 200
