"""Shared by the AppConfig tests: the fake AppConfig Data service behind its own fault proxy,
and a daemon factory that serves the AppConfig port."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import requests

from tests.support.appconfig_fake import AppConfigFake
from tests.support.process import Daemon, RawResponse, free_port
from tests.support.proxy import FaultProxy, Rule

FLAGS_ION = "application/ion; type=AWS.AppConfig.FeatureFlags"


@dataclass
class AppConfigAws:
    fake: AppConfigFake
    proxy: FaultProxy  # in front of the fake: faults on the AppConfig Data calls
    added: list[Rule]

    def add(self, rule: Rule) -> Rule:
        self.added.append(rule)
        return self.proxy.add(rule)


@dataclass
class Served:
    daemon: Daemon
    port: int

    def url(self, application: str, environment: str, profile: str, query: str = "") -> str:
        path = f"/applications/{application}/environments/{environment}/configurations/{profile}"
        return f"http://127.0.0.1:{self.port}{path}{query}"

    def get(self, application: str, environment: str, profile: str, query: str = "",
            **kwargs: object) -> requests.Response:
        return requests.get(self.url(application, environment, profile, query), timeout=30,
                            **kwargs)  # type: ignore[arg-type]

    def repeated(self, application: str, environment: str, profile: str, query: str,
                 headers: list[tuple[str, str]]) -> RawResponse:
        """A GET sending ``headers`` as given, repeated names included (``requests`` merges)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest("GET", self.url(application, environment, profile, query)
                            .split(str(self.port), 1)[1])
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders()
            response = conn.getresponse()
            return RawResponse(response.status, dict(response.getheaders()), response.read())
        finally:
            conn.close()


StartServed = Callable[..., Served]
StartDaemon = Callable[..., Daemon]  # conftest's (which imports these fixtures)


@pytest.fixture(scope="session")
def appconfig_service() -> AppConfigFake:
    fake = AppConfigFake()
    # Sessions that asked for no interval (poll intervals under 15 s) are told 1 s, so tests
    # wait seconds, not AWS's minute.
    fake.interval_override = 1
    return fake


@pytest.fixture(scope="session")
def appconfig_proxy(appconfig_service: AppConfigFake) -> FaultProxy:
    return FaultProxy(appconfig_service.url).start()


@pytest.fixture
def appconfig_aws(appconfig_service: AppConfigFake, appconfig_proxy: FaultProxy
                  ) -> Iterator[AppConfigAws]:
    aws = AppConfigAws(appconfig_service, appconfig_proxy, [])
    yield aws
    for rule in aws.added:
        appconfig_proxy.remove(rule)


@pytest.fixture
def start_served(start_daemon: StartDaemon, appconfig_proxy: FaultProxy) -> StartServed:
    """A daemon with the AppConfig port on (standalone: opted in by the port variable)."""

    def start(wait: bool = True, **env: str) -> Served:
        port = int(env.pop("appconfig_port", 0)) or free_port()
        settings = {"AWS_APPCONFIG_EXTENSION_HTTP_PORT": str(port),
                    "AWS_ENDPOINT_URL_APPCONFIGDATA": appconfig_proxy.url,
                    "AWS_APPCONFIG_EXTENSION_POLL_INTERVAL_SECONDS": "1", **env}
        daemon = start_daemon(wait=wait, **settings)
        if wait:
            wait_listening(port)
        return Served(daemon, port)

    return start


def wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {port}") from None
            time.sleep(0.02)


def until(read: Callable[[], requests.Response], done: Callable[[requests.Response], bool],
          timeout: float = 10.0) -> requests.Response:
    """Read until ``done`` (poll with a deadline: the poll interval has to pass)."""
    deadline = time.monotonic() + timeout
    while True:
        response = read()
        if done(response):
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"never done; last: {response.status_code} {response.headers}")
        time.sleep(0.05)


def metric(daemon: Daemon, name: str, **labels: str) -> float:
    text = daemon.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f"parameters_secrets_sidecar_{name}") and all(
                f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
