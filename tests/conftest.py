"""Shared fixtures: moto in server mode, the fault proxy in front of it, the daemon factory."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import hypothesis  # noqa: F401  (see below)
import pytest
from moto.server import ThreadedMotoServer

from tests.support.appconfig_served import (  # noqa: F401  (fixtures)
    appconfig_aws,
    appconfig_proxy,
    appconfig_service,
    start_served,
)
from tests.support.builds import binary, old_rootfs  # noqa: F401  (session fixtures)
from tests.support.process import Daemon, clean_env, free_port
from tests.support.proxy import FaultProxy, Rule

# hypothesis is imported here, at collection, whatever tests are selected: its pytest plugin
# otherwise imports it at the very end of the run, where CPython 3.11.7's compiler trips over
# its own recursion counter ("AST constructor recursion depth mismatch") and fails the run.
REGION = "us-east-1"
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access lines add only noise
FAKE_CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass
class Aws:
    """Direct clients to moto (not through the proxy), for seeding and for comparison."""

    ssm: Any
    sm: Any
    s3: Any


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def proxy(moto_url: str) -> FaultProxy:
    return FaultProxy(moto_url).start()


@pytest.fixture
def rules(proxy: FaultProxy) -> Iterator[list[Rule]]:
    """Fault rules a test adds to the shared proxy; all removed when the test ends."""
    added: list[Rule] = []
    yield added
    for rule in added:
        proxy.remove(rule)


@pytest.fixture(scope="session")
def aws(moto_url: str) -> Aws:
    kwargs = {"region_name": REGION, "endpoint_url": moto_url,
              "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return Aws(ssm=boto3.client("ssm", **kwargs), sm=boto3.client("secretsmanager", **kwargs),
               s3=boto3.client("s3", **kwargs))


@pytest.fixture(scope="session")
def token() -> str:
    return "tok-" + uuid.uuid4().hex


@pytest.fixture
def unique() -> str:
    """A fresh name prefix, so tests never see each other's data or upstream counts."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


StartDaemon = Callable[..., Daemon]


def daemon_env(home: Path, proxy: FaultProxy, token: str, port: int,
               extra: dict[str, str]) -> dict[str, str]:
    base = {"AWS_ENDPOINT_URL": proxy.url, "AWS_REGION": REGION, "AWS_TOKEN": token,
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port),
            # Tests that stop the daemon want it gone at once; the grace has its own tests.
            "PARAMETERS_SECRETS_EXTENSION_SHUTDOWN_GRACE_SECS": "0", **FAKE_CREDS}
    base.update(extra)
    return clean_env(home, base)


@pytest.fixture
def start_daemon(home: Path, proxy: FaultProxy, token: str) -> Iterator[StartDaemon]:
    started: list[Daemon] = []

    def start(argv: tuple[str, ...] = (), wait: bool = True, **extra: str) -> Daemon:
        port = int(extra.pop("port", 0)) or free_port()
        env = daemon_env(home, proxy, token, port, extra)
        daemon = Daemon(env, env.get("AWS_TOKEN", token), port, argv)
        started.append(daemon)
        return daemon.wait_ready() if wait else daemon

    yield start
    for daemon in started:
        daemon.kill()


@pytest.fixture(scope="module")
def shared_daemon(home: Path, proxy: FaultProxy, token: str) -> Iterator[Daemon]:
    """One default daemon for tests that only read (unique names keep them apart)."""
    port = free_port()
    daemon = Daemon(daemon_env(home, proxy, token, port, {}), token, port).wait_ready()
    yield daemon
    daemon.kill()
