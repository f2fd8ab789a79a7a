"""Generated malformed requests: each gets a 4xx, and the daemon keeps serving."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Aws, StartDaemon
from tests.support.process import Daemon
from tests.support.proxy import FaultProxy, Rule

ROUTES = ["/systemsmanager/parameters/get", "/systemsmanager/parameters/get/",
          "/parameters/get", "/secretsmanager/get", "/secrets/get", "/v1/", "/ping",
          "/", "/v1", "/systemsmanager", ""]
KEYS = ["name", "secretId", "version", "label", "withDecryption", "refreshNow", "versionId",
        "versionStage", "Name", "x", ""]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO", "get"]

junk_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
percent = st.sampled_from(["%", "%z", "%zz", "%f", "%ff", "%c3%28", "%00", "%0a", "%2F", "%%"])
value = st.one_of(
    junk_text.map(lambda t: t.replace(" ", "").replace("\r", "").replace("\n", "")),
    percent,
    st.integers(2049, 12_000).map(lambda n: "n" * n),
    st.sampled_from(["true", "TRUE", "0", "maybe", "-1", "99999999999999999999"]),
)
pair = st.tuples(st.sampled_from(KEYS), value).map(lambda kv: f"{kv[0]}={kv[1]}")
query = st.lists(st.one_of(pair, percent), max_size=6).map("&".join)


@st.composite
def malformed_request(draw: st.DrawFn, token: str) -> bytes:
    method = draw(st.one_of(st.sampled_from(METHODS), st.text("ABCXYZ", min_size=1, max_size=8)))
    route = draw(st.sampled_from(ROUTES))
    target = route + "?" + draw(query)
    headers = [f"X-Aws-Parameters-Secrets-Token: {token}", "Connection: close"]
    if draw(st.booleans()):
        headers.append(draw(st.sampled_from(["X-Forwarded-For: 10.0.0.1", "Content-Length: 3",
                                             "Transfer-Encoding: chunked", "X-Vault-Token: x"])))
    head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n" + "\r\n".join(headers)
    raw = head.encode("utf-8", "surrogateescape") + b"\r\n\r\n"
    if draw(st.booleans()):
        raw += draw(st.binary(max_size=32))  # junk bytes after the head
    if draw(st.integers(0, 9)) == 0:  # not HTTP at all (but not only line ends, see below)
        raw = draw(st.binary(min_size=1, max_size=200).filter(lambda b: b.strip(b"\r\n")))
        raw += b"\r\n\r\n"
    return raw


def status_of(port: int, raw: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(raw)
        data = b""
        while b"\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    parts = data.split(b" ", 2)
    assert len(parts) >= 2 and parts[0].startswith(b"HTTP/1."), data[:80]
    return int(parts[1])


@pytest.fixture
def fuzz_daemon(start_daemon: StartDaemon, moto_url: str) -> Iterator[Daemon]:
    # Its own upstream, which answers every lookup with a client error: any name the fuzzer
    # makes up must come back as a 4xx, whatever moto would make of it.
    upstream = FaultProxy(moto_url).start()
    upstream.add(Rule(match="", kind="error", status=400, code="ValidationException"))
    yield start_daemon(AWS_ENDPOINT_URL=upstream.url)


def test_malformed_requests_get_4xx_and_the_daemon_survives(fuzz_daemon: Daemon, aws: Aws,
                                                            unique: str) -> None:
    statuses: list[int] = []

    @settings(max_examples=1000, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(malformed_request(fuzz_daemon.token))
    def check(raw: bytes) -> None:
        status = status_of(fuzz_daemon.port, raw)
        statuses.append(status)
        assert 400 <= status < 500 or (status == 200 and b" /ping" in raw.split(b"\r\n")[0])

    check()
    assert len(statuses) >= 1000
    assert fuzz_daemon.proc.poll() is None
    assert fuzz_daemon.get("/ping").text == "healthy"
    assert fuzz_daemon.get("/systemsmanager/parameters/get",
                           params={"name": f"/{unique}/x"}).status_code == 400


@pytest.mark.timeout(30)
def test_line_ends_alone_are_not_a_request_yet(fuzz_daemon: Daemon) -> None:
    """Empty lines before a request line are ignored (RFC 9112, section 2.2), so a client that
    sends only line ends has not sent a request: it gets no answer, and the connection is
    closed at the head deadline like any request that never completes (found by the fuzzer
    above: ``\\r\\r\\n\\r\\n``)."""
    with socket.create_connection(("127.0.0.1", fuzz_daemon.port), timeout=20) as conn:
        conn.sendall(b"\r\r\n\r\n")
        assert conn.recv(4096) == b""  # closed, within the head deadline (5 s) and no answer
    assert fuzz_daemon.get("/ping").text == "healthy"


@pytest.mark.timeout(60)
def test_malformed_requests_do_not_fill_the_log(fuzz_daemon: Daemon) -> None:
    """A client's unparsable request is answered 400 and logged at DEBUG only: at the default
    level a local client cannot write log lines at will."""
    for _ in range(30):
        assert status_of(fuzz_daemon.port, b"\r\rGET / HTTP/1.1\r\n\r\n") == 400
    assert fuzz_daemon.get("/ping").text == "healthy"
    assert "BadHttpMessage" not in fuzz_daemon.output
    assert " ERROR " not in fuzz_daemon.output
