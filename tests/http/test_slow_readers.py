"""Clients that never read their answers (review S3-1, S3-11): they cannot pin the connection
slots, hold answers in memory without bound, or write log lines at will.

The figures (RSS, latencies) are measured by ``scripts/bench.py slow-readers``; the bounds
asserted here are generous on purpose.
"""

from __future__ import annotations

import http.client
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sidecar.http.admission import SWEEP_EVERY_SECS, WRITE_TIMEOUT_SECS
from tests.conftest import Aws, StartDaemon
from tests.support.process import TOKEN_HEADER, Daemon

OBJECT_BYTES = 1024 * 1024
MAX_CONN = 64  # PING_HEADROOM (2) more connections are allowed: 66 are pinned below
IDLE = 1000
PIPELINED = 16  # requests per stalled connection, each for the 1 MiB object
# A stalled connection is closed within the write deadline, one sweep, and the moment its
# answers take to fill the kernel's buffers; the margin absorbs a loaded test machine.
CLOSED_WITHIN = WRITE_TIMEOUT_SECS + SWEEP_EVERY_SECS + 3.0
# The daemon's own bounds at the defaults: 64 MB of cache (here one object), 64 MB of unsent
# answers, plus one answer; the rest is slack for allocator behaviour (bench: see README).
RSS_GROWTH_BOUND_MB = 200
HUNG_UP = select.POLLRDHUP | select.POLLHUP | select.POLLERR


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _enough_files(needed: int) -> None:
    """Raise this process's open-files soft limit to ``needed``, or skip saying why."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files; the hard limit (ulimit -Hn) is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _stalled(port: int, request: bytes, count: int) -> socket.socket:
    """A connection that sends ``count`` pipelined requests (what the daemon takes within a
    second) and never reads an answer."""
    sock = _unread(port)
    _push(sock, memoryview(request * count), time.monotonic() + 1.0)
    return sock


def _unread(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def _push(sock: socket.socket, data: memoryview, until: float) -> memoryview:
    """Send what the daemon takes until ``until``; the rest is returned."""
    while data:
        try:
            data = data[sock.send(data):]
        except BlockingIOError:
            if time.monotonic() >= until:
                break
            select.select([], [sock], [], 0.02)
        except OSError:
            break  # closed by the daemon already: the poller notices
    return data


class Attacker:
    """Keeps ``size`` connections that pipeline ``count`` requests each and never read: sends
    what the daemon takes, replaces each connection the daemon closes, and notes how long each
    one lived (from its opening)."""

    def __init__(self, port: int, request: bytes, count: int, size: int) -> None:
        self.port, self.size = port, size
        self.data = memoryview(request * count)
        self.open: dict[int, tuple[socket.socket, float, memoryview]] = {}
        self.lived: list[float] = []
        self._poller = select.poll()

    def reap(self, wait_ms: int = 0) -> None:
        for fd, _event in self._poller.poll(wait_ms):
            sock, since, _rest = self.open.pop(fd)
            self._poller.unregister(fd)
            self.lived.append(time.monotonic() - since)
            sock.close()

    def keep(self) -> None:
        self.reap()
        while len(self.open) < self.size:
            sock = _unread(self.port)
            self.open[sock.fileno()] = (sock, time.monotonic(), self.data)
            self._poller.register(sock, HUNG_UP)
        for fd, (sock, since, rest) in list(self.open.items()):
            if rest:
                self.open[fd] = (sock, since, _push(sock, rest, 0.0))

    def wait_all_closed(self, timeout: float) -> None:
        until = time.monotonic() + timeout
        while self.open and time.monotonic() < until:
            self.reap(100)

    def close(self) -> None:
        for sock, _since, _rest in self.open.values():
            sock.close()


def _s3_request(daemon: Daemon, bucket: str) -> bytes:
    return (f"GET /s3/get?bucket={bucket}&key=big HTTP/1.1\r\nHost: x\r\n"
            f"{TOKEN_HEADER}: {daemon.token}\r\n\r\n").encode()


class Probes:
    """A fresh connection every 0.1 s for ``/ping`` and for a cached read, timed."""

    def __init__(self, daemon: Daemon, cached_path: str) -> None:
        self.daemon = daemon
        self.cached_path = cached_path
        self.results: list[tuple[str, int, float]] = []  # what, status, seconds
        self.peak_rss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, path: str, headers: dict[str, str]) -> tuple[int, float]:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=5)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status, time.monotonic() - started
        except OSError as exc:
            return -1, float(type(exc).__name__ == "timeout") + 5.0
        finally:
            conn.close()

    def _run(self) -> None:
        token = {TOKEN_HEADER: self.daemon.token}
        while not self._stop.is_set():
            self.results.append(("/ping", *self._one("/ping", {})))
            self.results.append(("cached", *self._one(self.cached_path, token)))
            self.peak_rss_mb = max(self.peak_rss_mb, _rss_mb(self.daemon.proc.pid))
            self._stop.wait(0.1)

    @contextmanager
    def running(self) -> Iterator[Probes]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(10)

    def failures(self) -> list[tuple[str, int, float]]:
        return [result for result in self.results if result[1] != 200 or result[2] >= 1.0]


def _setup(start_daemon: StartDaemon, aws: Aws, unique: str, **env: str
           ) -> tuple[Daemon, str, str]:
    bucket = f"b-{unique}"
    aws.s3.create_bucket(Bucket=bucket)
    aws.s3.put_object(Bucket=bucket, Key="big", Body=bytes(range(256)) * (OBJECT_BYTES // 256))
    name = f"/{unique}/cached"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    daemon = start_daemon(**env)
    assert daemon.get("/s3/get", params={"bucket": bucket, "key": "big"}).status_code == 200
    assert daemon.param(name).status_code == 200
    return daemon, bucket, f"/systemsmanager/parameters/get?name={name}"


def _quiet(output: str) -> None:
    """No per-connection log lines, no tracebacks, no unretrieved task exceptions."""
    assert "never retrieved" not in output
    assert "Traceback" not in output
    assert " ERROR " not in output


@pytest.mark.timeout(240)
def test_stalled_readers_and_idle_floods_never_lock_out_pings_and_hits(
        start_daemon: StartDaemon, aws: Aws, unique: str) -> None:
    _enough_files(MAX_CONN + 2 + IDLE + 400)
    daemon, bucket, cached = _setup(start_daemon, aws, unique,
                                    PARAMETERS_SECRETS_EXTENSION_MAX_INBOUND_CONNECTIONS=str(MAX_CONN))
    before = _rss_mb(daemon.proc.pid)
    attacker = Attacker(daemon.port, _s3_request(daemon, bucket), PIPELINED, MAX_CONN + 2)
    idle: list[socket.socket] = []
    try:
        with Probes(daemon, cached).running() as probes:
            attacker.keep()
            for _ in range(IDLE):
                idle.append(socket.create_connection(("127.0.0.1", daemon.port)))
                if len(idle) % 50 == 0:
                    attacker.keep()
            pinned_until = time.monotonic() + WRITE_TIMEOUT_SECS + 5
            while time.monotonic() < pinned_until:
                attacker.keep()
                time.sleep(0.05)
            # The attacker stops replacing: every stalled connection left is closed in time.
            attacker.wait_all_closed(CLOSED_WITHIN + 1)
        assert not attacker.open, f"{len(attacker.open)} stalled connections still open"
        assert len(probes.results) >= 100 and not probes.failures(), probes.failures()[:5]
        assert max(attacker.lived) <= CLOSED_WITHIN, max(attacker.lived)
        assert probes.peak_rss_mb - before < RSS_GROWTH_BOUND_MB, (before, probes.peak_rss_mb)
    finally:
        for sock in idle:
            sock.close()
        attacker.close()
    metrics = daemon.get("/metrics").text
    assert 'http_connections_closed_total{reason="evicted_stalled"}' in metrics
    _quiet(daemon.output)


@pytest.mark.timeout(120)
def test_a_client_that_stops_reading_is_cut_off_at_the_write_deadline(
        start_daemon: StartDaemon, aws: Aws, unique: str) -> None:
    daemon, bucket, _cached = _setup(start_daemon, aws, unique)
    sock = _stalled(daemon.port, _s3_request(daemon, bucket), PIPELINED)
    started = time.monotonic()
    poller = select.poll()
    poller.register(sock, HUNG_UP)
    try:
        assert poller.poll(int(CLOSED_WITHIN * 1000)), "never closed"
        took = time.monotonic() - started
    finally:
        sock.close()
    # Not before the deadline (nothing else pressed on it: no cap, no byte bound reached).
    assert WRITE_TIMEOUT_SECS - 1 <= took <= CLOSED_WITHIN, took
    metrics = daemon.get("/metrics").text
    assert 'http_connections_closed_total{reason="write_timeout"} 1' in metrics
    assert "http_unsent_bytes 0" in metrics
    _quiet(daemon.output)


@pytest.mark.timeout(120)
def test_pings_pipelined_without_a_token_cannot_pin_the_slots(
        start_daemon: StartDaemon, unique: str) -> None:
    """Review S3-1's first repro: no token needed, only many pipelined /ping requests."""
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_MAX_INBOUND_CONNECTIONS="1")
    # max_conn + 2 = 3 connections; before, answering 40,000 pings each into full buffers took
    # a few seconds, and from then on every new connection was refused.
    attacker = Attacker(daemon.port, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n", 40_000, 3)
    answered: list[float] = []
    try:
        attack_until = time.monotonic() + WRITE_TIMEOUT_SECS + 2
        while time.monotonic() < attack_until:
            attacker.keep()
            time.sleep(0.1)
        for _ in range(20):
            attacker.keep()
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=5)
            conn.request("GET", "/ping")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"healthy")
            conn.close()
            answered.append(time.monotonic() - started)
            time.sleep(0.1)
    finally:
        attacker.close()
    assert max(answered) < 1.0
    _quiet(daemon.output)  # before: one "Task exception was never retrieved" per refusal


@pytest.mark.timeout(60)
async def test_refusals_at_the_cap_are_counted_not_logged_one_by_one(
        caplog: pytest.LogCaptureFixture) -> None:
    """Review S3-11. Every connection busy (here: answers that wait forever, as reads waiting
    for AWS do), so newcomers are refused: each gets the 429 and no aiohttp task, so nothing
    fails later and asyncio has nothing to report; the log gets one summary line."""
    import asyncio
    import gc
    import logging

    from aiohttp import web

    from sidecar.core.metrics import Metrics
    from sidecar.http.admission import REFUSED, GuardedServer

    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
    forever = asyncio.Event()

    async def wait_forever(request: web.BaseRequest) -> web.StreamResponse:
        await forever.wait()
        return web.Response(text="late")

    metrics = Metrics()
    server = GuardedServer(wait_forever, max_connections=2, max_unsent_bytes=1 << 20,
                           metrics=metrics, access_log=None)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    held = []
    try:
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            held.append(writer)
        while server.busy_connections() < 2:
            await asyncio.sleep(0.01)
        with caplog.at_level(logging.WARNING, logger="sidecar"):
            for _ in range(50):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert await reader.read() == REFUSED
                writer.close()
        assert metrics.refused == 50
        assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1
        gc.collect()
        await asyncio.sleep(0.05)
        assert not reported, reported[:3]
    finally:
        for writer in held:
            writer.close()
        forever.set()
        await runner.cleanup()
