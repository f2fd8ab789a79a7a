"""Start-up that can be stopped and says what is wrong (review S3-12, field reports N8, N12):
credential validation is bounded and gives way to SIGTERM; missing credentials are one clear
line, never "transient"; a variable overriding a configuration file's value is logged."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sidecar.daemon import NO_CREDENTIALS, VALIDATE_SECS
from tests.conftest import StartDaemon
from tests.support.process import Daemon, free_port

# Everything a daemon could find credentials in, removed (conftest gives fake keys otherwise).
NO_CREDENTIALS_ENV: dict[str, Any] = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}


class Silent:
    """A TCP endpoint that accepts connections and never answers (STS that hangs)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def wait_accepted(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.accepted:
            assert time.monotonic() < deadline, "nothing connected to the silent endpoint"
            time.sleep(0.02)

    def close(self) -> None:
        self._server.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    endpoint = Silent()
    yield endpoint
    endpoint.close()


def _config(tmp_path: Path, text: str = "") -> str:
    path = tmp_path / "agent.toml"
    path.write_text('log_level = "INFO"\n' + text)  # validate_credentials: the Agent's default
    return str(path)


def _starting(start_daemon: StartDaemon, argv: tuple[str, ...], **env: Any) -> Daemon:
    daemon = start_daemon(argv, wait=False, **env)
    daemon.wait_for_output("INFO starting")
    return daemon


@pytest.mark.timeout(60)
def test_sigterm_during_a_validation_that_hangs_exits_within_2_s(
        start_daemon: StartDaemon, silent: Silent, tmp_path: Path) -> None:
    daemon = _starting(start_daemon, ("--config", _config(tmp_path)),
                       AWS_ENDPOINT_URL_STS=silent.url)
    silent.wait_accepted()  # GetCallerIdentity is out, and will never be answered
    sent = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.finish(timeout=10) == 0
    assert time.monotonic() - sent < 2.0
    assert "stopped during start-up" in daemon.output
    assert "Traceback" not in daemon.output


@pytest.mark.timeout(60)
def test_a_validation_that_hangs_is_bounded_then_a_warning(
        start_daemon: StartDaemon, silent: Silent, tmp_path: Path) -> None:
    started = time.monotonic()
    daemon = _starting(start_daemon, ("--config", _config(tmp_path)),
                       AWS_ENDPOINT_URL_STS=silent.url)
    daemon.wait_for_output("INFO ready", timeout=VALIDATE_SECS + 10)
    assert time.monotonic() - started < VALIDATE_SECS + 8  # not botocore's minutes
    assert requests.get(daemon.base + "/ping", timeout=2).text == "healthy"
    [line] = [line for line in daemon.output.splitlines() if "could not be validated" in line]
    assert "WARN" in line and "did not answer within" in line


@pytest.mark.timeout(60)
def test_a_validation_that_hangs_stops_start_up_without_ignore_transient_errors(
        start_daemon: StartDaemon, silent: Silent, tmp_path: Path) -> None:
    daemon = _starting(start_daemon, ("--config", _config(tmp_path, "ignore_transient_errors "
                                                                     "= false\n")),
                       AWS_ENDPOINT_URL_STS=silent.url)
    assert daemon.finish(timeout=VALIDATE_SECS + 10) == 1
    [line] = [line for line in daemon.output.splitlines() if " ERROR " in line]
    assert "validate_credentials" in line and "did not answer within" in line
    assert "Traceback" not in daemon.output


@pytest.mark.timeout(60)
def test_missing_credentials_are_one_clear_line_at_start(start_daemon: StartDaemon,
                                                         unique: str) -> None:
    daemon = start_daemon(**NO_CREDENTIALS_ENV)
    daemon.wait_for_output(NO_CREDENTIALS)
    for _ in range(3):
        answer = daemon.param(f"/{unique}/p")
        assert answer.status_code == 500 and "no AWS credentials" in answer.text
    assert daemon.output.count("no AWS credentials") == 1
    assert "transient" not in daemon.output.lower()


@pytest.mark.timeout(60)
def test_missing_credentials_stop_a_validating_start_with_one_line(
        start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = start_daemon(("--config", _config(tmp_path)), wait=False, **NO_CREDENTIALS_ENV)
    assert daemon.finish(timeout=20) == 1
    [line] = [line for line in daemon.output.splitlines() if " ERROR " in line]
    assert "no AWS credentials found" in line
    assert "transient" not in daemon.output.lower()


@pytest.mark.timeout(60)
def test_a_variable_overriding_a_file_value_is_logged(start_daemon: StartDaemon,
                                                      tmp_path: Path) -> None:
    """Field report N8: the image's HTTP_PORT beat the file's http_port without a word."""
    file_port, env_port = free_port(), free_port()
    path = _config(tmp_path, f"validate_credentials = false\nhttp_port = {file_port}\n"
                             "cache_size = 50\n")
    daemon = start_daemon(("--config", path), port=str(env_port),
                          PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE="50")
    [line] = [line for line in daemon.output.splitlines() if "overrides" in line]
    assert "WARN" in line and f"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT={env_port}" in line
    assert f"http_port = {file_port}" in line  # the same cache size twice is no conflict
