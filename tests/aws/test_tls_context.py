"""One verifying TLS context for all the AWS clients (issue 22: each client loading the CA
bundle again cost about 45 ms of start-up CPU), and it still verifies."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from sidecar.aws.tls import SharedContextSession
from tests.conftest import StartDaemon
from tests.support.fake_aws import FakeAwsThread, make_tls

pytestmark = pytest.mark.timeout(60)


def test_clients_with_the_same_verify_share_one_context() -> None:
    first, _ = SharedContextSession()._build_ssl_contexts(None)
    second, _ = SharedContextSession()._build_ssl_contexts(None)
    assert isinstance(first, ssl.SSLContext) and first is second
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    unverified, _ = SharedContextSession(verify=False)._build_ssl_contexts(None)
    assert unverified is not first and unverified.verify_mode == ssl.CERT_NONE


def test_a_bundle_replaced_in_place_is_loaded_again(tmp_path: Path) -> None:
    """A CA rotated into ``AWS_CA_BUNDLE`` reaches the clients made after it."""
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    _, first_bundle = make_tls(tmp_path / "first")
    _, second_bundle = make_tls(tmp_path / "second")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(first_bundle.read_bytes())
    before, _ = SharedContextSession(verify=str(bundle))._build_ssl_contexts(None)
    assert SharedContextSession(verify=str(bundle))._build_ssl_contexts(None)[0] is before
    bundle.write_bytes(second_bundle.read_bytes() + b"\n")  # another CA, another size
    after, _ = SharedContextSession(verify=str(bundle))._build_ssl_contexts(None)
    assert after is not before


def test_a_proxy_gets_contexts_of_its_own() -> None:
    """aiobotocore adds to the contexts it makes for a proxy: never to the shared one."""
    shared, _ = SharedContextSession()._build_ssl_contexts(None)
    endpoint, proxy = SharedContextSession()._build_ssl_contexts("https://proxy.example:3128")
    assert endpoint is not shared and proxy is not None and proxy is not shared


@pytest.fixture(scope="module")
def https_aws(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tls, bundle = make_tls(tmp_path_factory.mktemp("tls"))
    return FakeAwsThread(tls=tls).url, bundle


def test_the_daemon_reads_over_https_with_one_context(start_daemon: StartDaemon,
                                                      https_aws: tuple[str, Path]) -> None:
    url, bundle = https_aws
    daemon = start_daemon(AWS_ENDPOINT_URL=url, AWS_CA_BUNDLE=str(bundle))
    parameter = daemon.param("/tls/string")
    assert parameter.status_code == 200, parameter.text
    assert parameter.json()["Parameter"]["Value"].startswith("v")
    secret = daemon.secret("tls/secret")  # a second client, the same context
    assert secret.status_code == 200, secret.text


def test_the_shared_context_still_refuses_an_unknown_certificate(
        start_daemon: StartDaemon, https_aws: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = https_aws
    _, stranger = make_tls(tmp_path)  # a CA bundle without the fake AWS's certificate
    daemon = start_daemon(AWS_ENDPOINT_URL=url, AWS_CA_BUNDLE=str(stranger),
                          SSM_PARAMETER_STORE_TIMEOUT_MILLIS="3000")
    answer = daemon.param("/tls/string")
    assert answer.status_code == 502, answer.text
    assert "SSLError" in answer.json()["message"] and "vvv" not in answer.text
