"""Issue 10 end to end: races through the gated proxy, transient faults, client mistakes,
hostile local clients, shutdown grace, prefetch matching, process hardening, token hygiene."""

from __future__ import annotations

import resource
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import Aws, StartDaemon
from tests.support.process import Daemon
from tests.support.proxy import FaultProxy, Rule


def _poll(condition: object, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never held")
        time.sleep(0.01)


def test_a_refresh_landing_after_refresh_now_never_restores_the_old_value(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, rules: list[Rule],
        unique: str) -> None:
    name = f"{unique}/rotated"
    aws.sm.create_secret(Name=name, SecretString="before")
    daemon = start_daemon(SECRETS_MANAGER_TTL="2",
                          PARAMETERS_SECRETS_EXTENSION_REFRESH_AHEAD="0.01")
    assert daemon.secret(name).json()["SecretString"] == "before"
    gate = proxy.add(Rule(match=name, kind="gate"))
    rules.append(gate)
    # Past the refresh point, and at this pace the next read would come after expiry: this
    # read starts a background refresh, and AWS holds it.
    time.sleep(1.1)  # the refresh window opens by the clock: that is what is tested
    assert daemon.secret(name).headers["X-Cache"] == "hit"
    proxy.wait_held(gate, 1)
    aws.sm.put_secret_value(SecretId=name, SecretString="after")
    proxy.remove(gate)  # later calls pass; the held one stays held
    rotated = daemon.secret(name, refreshNow="true")
    assert rotated.json()["SecretString"] == "after"
    # The refresh that started first now lands, carrying the value from before.
    proxy.release(gate)
    _poll(lambda: gate.passed == 1, what="the held refresh landing")
    for _ in range(5):
        assert daemon.secret(name).json()["SecretString"] == "after"


def _refresh_held_at_gate(start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy,
                          rules: list[Rule], name: str, value: str) -> tuple[Daemon, Rule]:
    """A daemon (TTL 2 s, refresh-ahead at once) whose background refresh of the parameter
    ``name`` is held at a proxy gate."""
    aws.ssm.put_parameter(Name=name, Type="String", Value=value)
    daemon = start_daemon(SSM_PARAMETER_STORE_TTL="2",
                          PARAMETERS_SECRETS_EXTENSION_REFRESH_AHEAD="0.01")
    daemon.param(name)
    gate = proxy.add(Rule(match=name, kind="gate"))
    rules.append(gate)
    time.sleep(1.1)  # the refresh window opens by the clock: that is what is tested
    daemon.param(name)
    proxy.wait_held(gate, 1)
    return daemon, gate


def test_a_refresh_landing_after_a_delete_never_brings_the_parameter_back(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, rules: list[Rule],
        unique: str) -> None:
    name = f"/{unique}/deleted"
    daemon, gate = _refresh_held_at_gate(start_daemon, aws, proxy, rules, name, "v")
    proxy.remove(gate)
    aws.ssm.delete_parameter(Name=name)
    assert daemon.param(name, refreshNow="true").json()["__type"] == "ParameterNotFound"
    proxy.release(gate)  # the held refresh lands (moto answers it now: not found too, or v)
    _poll(lambda: gate.passed == 1, what="the held refresh landing")
    answer = daemon.param(name)
    assert answer.status_code == 400, answer.text
    assert answer.json()["__type"] == "ParameterNotFound"


def test_stale_served_while_a_slow_refresh_is_out(start_daemon: StartDaemon, aws: Aws,
                                                  proxy: FaultProxy, rules: list[Rule],
                                                  unique: str) -> None:
    name = f"/{unique}/slow"
    daemon, gate = _refresh_held_at_gate(start_daemon, aws, proxy, rules, name, "v1")
    time.sleep(1.0)  # past the TTL, with AWS still holding the refresh
    answer = daemon.param(name)  # answered at once: it would block at the gate otherwise
    assert answer.headers["X-Cache"] == "stale"
    assert answer.json()["Parameter"]["Value"] == "v1"
    proxy.release(gate)


def test_html_5xx_never_reaches_the_client(start_daemon: StartDaemon, proxy: FaultProxy,
                                           rules: list[Rule], unique: str) -> None:
    rules.append(proxy.add(Rule(match=unique, kind="html500")))
    daemon = start_daemon()
    answer = daemon.param(f"/{unique}/p")
    assert answer.status_code >= 500
    body = answer.json()
    assert "<" not in body["message"] and "\n" not in body["message"]
    assert set(body) == {"__type", "message"}


def test_credential_failures_keep_and_serve_the_cached_value(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, unique: str,
        tmp_path: Path) -> None:
    """The container credentials endpoint fails after the first fetch: the value is kept."""
    name = f"/{unique}/creds"
    aws.ssm.put_parameter(Name=name, Type="String", Value="kept")
    creds = _CredentialsEndpoint()
    try:
        daemon = start_daemon(SSM_PARAMETER_STORE_TTL="1", AWS_ACCESS_KEY_ID="",
                              AWS_SECRET_ACCESS_KEY="",
                              AWS_CONTAINER_CREDENTIALS_FULL_URI=creds.url)
        first = daemon.param(name)
        assert first.status_code == 200, first.text
        assert first.json()["Parameter"]["Value"] == "kept"
        creds.failing = True
        time.sleep(1.1)  # past the TTL; the credentials must be fetched again, and fail
        answer = daemon.param(name)
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Cache"] == "stale"
        assert answer.json()["Parameter"]["Value"] == "kept"
    finally:
        creds.stop()


class _CredentialsEndpoint:
    """A container credentials endpoint handing out credentials that expire in 5 minutes:
    inside botocore's mandatory refresh window (10 minutes), so every call fetches them again,
    yet never already expired when they arrive (credentials expiring a second after they were
    issued could be stale on arrival on a loaded machine, and the first read failed)."""

    def __init__(self) -> None:
        import http.server
        import json

        owner = self
        self.failing = False

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if owner.failing:
                    self.send_response(500)
                    self.end_headers()
                    return
                expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300))
                body = json.dumps({"AccessKeyId": "testing", "SecretAccessKey": "testing",
                                   "Token": "t", "Expiration": expires}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/creds"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()


@pytest.mark.parametrize(("path", "key"), [
    ("/secretsmanager/get?secretId=s&versionId=short", "versionId"),
    ("/systemsmanager/parameters/get?name=/p&label=aws-reserved", "label"),
    ("/systemsmanager/parameters/get?name=/p&label=1starts-with-digit", "label"),
    ("/systemsmanager/parameters/get?name=/p&label=has%20space", "label"),
    ("/systemsmanager/parameters/get?name=/p&version=99999999999999999999", "version"),
])
def test_selectors_are_validated_before_any_aws_call(shared_daemon: Daemon, proxy: FaultProxy,
                                                     path: str, key: str) -> None:
    before = len(proxy.calls)
    answer = shared_daemon.raw(path)
    assert answer.status_code == 400, answer.text
    assert answer.json()["__type"] == "InvalidParameterValue"
    assert repr(key) in answer.json()["message"]
    assert len(proxy.calls) == before


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_idle_and_half_open_connections_cannot_exhaust_the_daemon(
        start_daemon: StartDaemon, aws: Aws, unique: str) -> None:
    name = f"/{unique}/reachable"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_MAX_INBOUND_CONNECTIONS="200")
    assert daemon.param(name).status_code == 200
    before = _rss_kb(daemon.proc.pid)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = min(2000, soft - 100)
    sockets: list[socket.socket] = []
    try:
        for index in range(count):
            sock = socket.create_connection(("127.0.0.1", daemon.port))
            if index % 2:  # half of them send half a head and stall (slowloris)
                sock.sendall(b"GET /ping HTTP/1.1\r\nX-Slow: " + b"a" * 4000)
            sockets.append(sock)
        # Fresh connections still get answers: the oldest idle ones made room.
        fresh = requests.Session()
        assert fresh.get(daemon.base + "/ping", timeout=5).text == "healthy"
        answer = fresh.get(daemon.base + "/systemsmanager/parameters/get",
                           params={"name": name}, timeout=5,
                           headers={"X-Aws-Parameters-Secrets-Token": daemon.token})
        assert answer.status_code == 200
        # Order of magnitude only (the 10 MB target is measured by scripts/bench): without the
        # cap, 2,000 connections held ~100 MB of buffers and handlers.
        assert _rss_kb(daemon.proc.pid) - before < 40 * 1024
    finally:
        for sock in sockets:
            sock.close()


def test_the_open_files_limit_is_raised_to_the_hard_limit(start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
    [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
    soft, hard = line.split()[3:5]
    assert soft == hard


def test_no_core_dumps(start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
    [line] = [line for line in limits.splitlines() if line.startswith("Max core file size")]
    assert line.split()[4:6] == ["0", "0"]


def test_the_process_is_not_dumpable(start_daemon: StartDaemon) -> None:
    """The daemon reads PR_GET_DUMPABLE back from the kernel and logs it at start.

    (A cross-process check, reading /proc/<pid>/environ without CAP_SYS_PTRACE, is what the
    flag forbids on Linux; this sandbox's kernel does not enforce it, so the read-back is the
    check that works everywhere.)"""
    daemon = start_daemon()
    daemon.wait_for_output("dumpable=false")
    assert "core_dumps=off" in daemon.output


def test_sigterm_keeps_serving_for_the_grace_then_answers_503(
        start_daemon: StartDaemon, aws: Aws, unique: str) -> None:
    name = f"/{unique}/grace"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_SHUTDOWN_GRACE_SECS="2")
    session = requests.Session()  # one keep-alive connection, as an app's client pool has

    def read() -> requests.Response:
        return session.get(daemon.base + "/systemsmanager/parameters/get", params={"name": name},
                           headers={"X-Aws-Parameters-Secrets-Token": daemon.token}, timeout=5)

    assert read().status_code == 200
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.wait_for_output("shutting down after the grace period")
    assert read().status_code == 200  # the app beside us may still be reading
    fresh = requests.get(daemon.base + "/ping", timeout=5)  # new connections too
    assert fresh.text == "healthy"
    daemon.wait_for_output("reason=signal\n", timeout=10)
    statuses: set[int] = set()
    try:
        while daemon.proc.poll() is None:
            statuses.add(read().status_code)
    except requests.ConnectionError:
        pass  # the drain ended and the daemon closed its listener
    assert statuses <= {503}
    assert daemon.finish() == 0


def test_a_second_signal_ends_the_grace(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_SHUTDOWN_GRACE_SECS="600")
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.wait_for_output("shutting down after the grace period")
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.finish(timeout=10) == 0


def test_a_token_with_surrounding_whitespace_stops_start_up(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(wait=False, AWS_TOKEN="secret-token ")
    assert daemon.finish() != 0
    assert "AWS_TOKEN has leading or trailing whitespace" in daemon.output
    assert "secret-token" not in daemon.output


def test_a_token_file_is_stripped_and_capped(start_daemon: StartDaemon, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  file-token\n")
    daemon = start_daemon(AWS_TOKEN=f"file://{path}")
    assert daemon.get("/secretsmanager/get?secretId=x", token="file-token").status_code != 403
    path.write_text("x" * 5000)
    too_big = start_daemon(wait=False, AWS_TOKEN=f"file://{path}")
    assert too_big.finish() != 0
    assert "larger than 4096 bytes" in too_big.output


def test_a_token_file_is_reread_when_it_changes(start_daemon: StartDaemon,
                                                tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-token\n")
    daemon = start_daemon(AWS_TOKEN=f"file://{path}")
    assert daemon.get("/secretsmanager/get?secretId=x", token="first-token").status_code != 403
    replacement = tmp_path / "token.new"
    replacement.write_text("second-token\n")
    replacement.replace(path)  # rotated the way tools do it: a new file moved into place
    deadline = time.monotonic() + 10
    while daemon.get("/secretsmanager/get?secretId=x", token="second-token").status_code == 403:
        assert time.monotonic() < deadline, "the new token never took effect"
        time.sleep(0.1)
    assert daemon.get("/secretsmanager/get?secretId=x", token="first-token").status_code == 403
    assert "second-token" not in daemon.output and "first-token" not in daemon.output


def test_prefetch_never_swaps_a_version_and_an_arn_item(start_daemon: StartDaemon, aws: Aws,
                                                         unique: str) -> None:
    name = f"/{unique}/versioned"
    aws.ssm.put_parameter(Name=name, Type="String", Value="one")
    aws.ssm.put_parameter(Name=name, Type="String", Value="two", Overwrite=True)
    arn = aws.ssm.get_parameter(Name=name)["Parameter"]["ARN"]
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_PREFETCH=f"ssm:{name}?version=1,ssm:{arn}")
    daemon.wait_for_output("prefetch done")
    first = daemon.param(name, version="1")
    latest = daemon.param(arn)
    assert first.json()["Parameter"]["Value"] == "one"
    assert latest.json()["Parameter"]["Value"] == "two"
