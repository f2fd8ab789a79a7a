"""Clients that never read (review S3-1) and 1 MiB objects (S3-6), at the daemon's defaults.

1. Stalled readers: ``max_conn`` + 2 connections that pipeline reads of a cached 1 MiB S3 object
   and never read, replaced as soon as the daemon closes one, plus 1,000 idle connections, for
   ``--seconds``. Meanwhile a fresh connection every 0.1 s reads ``/ping`` and a cached
   parameter. Reported: their latencies, the daemon's RSS and the kernel's TCP buffer memory
   (peak), and how long a stalled connection lived at most.
2. The byte bound: RSS after reading 400 distinct 1 MiB objects, at the default bound outside
   Lambda and at a 128 MB function's.

Usage: .venv/bin/python scripts/bench_slow_readers.py [--seconds N]   (also run by scripts/bench)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import resource
import select
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path[:0] = [str(Path(__file__).resolve().parent)]

from benchlib import (  # noqa: E402
    TOKEN,
    TOKEN_HEADER,
    FakeAwsThread,
    daemon_env,
    free_port,
    parameter_path,
    rss_mb,
    start_daemon,
    stop,
)

MIB = 1024 * 1024
DEFAULT_MAX_CONN = 800
IDLE = 1000
PIPELINED = 8
OBJECT_PATH = "/s3/get?bucket=bench-bucket&key={key}"


class FakeS3Thread:
    """GetObject only: every key is a 1 MiB object whose bytes depend on the key."""

    def __init__(self) -> None:
        self.url = ""
        self._started = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._started.wait(10)

    async def _get(self, request: web.Request) -> web.Response:
        key = request.match_info["key"].encode()
        body = (key * (MIB // len(key) + 1))[:MIB]
        return web.Response(body=body, content_type="application/octet-stream", headers={
            "ETag": f'"{abs(hash(key))}"', "Last-Modified": "Wed, 01 May 2024 12:00:00 GMT"})

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/{bucket}/{key:.+}", self._get)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        port = free_port()
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        self.url = f"http://127.0.0.1:{port}"
        self._started.set()
        loop.run_forever()


def _tcp_memory_mb() -> float:
    """The kernel's memory in TCP socket buffers, all sockets (``/proc/net/sockstat``)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return round(int(fields[fields.index("mem") + 1]) * 4096 / MIB, 1)
    return 0.0


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), (time.perf_counter() - started) * 1000
    finally:
        conn.close()


def _stalled(port: int, request: bytes) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    with contextlib.suppress(OSError):  # the daemon may have closed it already
        sock.send(request * PIPELINED)
    return sock


def stalled_readers(seconds: float, max_conn: int = DEFAULT_MAX_CONN) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    aws, s3 = FakeAwsThread(), FakeS3Thread()
    port = free_port()
    daemon = start_daemon(daemon_env(
        aws.url, port, AWS_ENDPOINT_URL_S3=s3.url,
        PARAMETERS_SECRETS_EXTENSION_MAX_INBOUND_CONNECTIONS=str(max_conn)), cpu=0)
    token = {TOKEN_HEADER: TOKEN}
    obj, cached = OBJECT_PATH.format(key="big"), parameter_path("/bench/cached")
    request = (f"GET {obj} HTTP/1.1\r\nHost: x\r\n{TOKEN_HEADER}: {TOKEN}\r\n\r\n").encode()
    stalled: dict[int, tuple[socket.socket, float]] = {}
    idle: list[socket.socket] = []
    lived: list[float] = []
    pings: list[float] = []
    reads: list[float] = []
    statuses: set[int] = set()
    poller = select.poll()
    size = min(max_conn + 2, (hard - IDLE - 200) // 2)
    done = threading.Event()
    peaks = {"rss": 0.0, "tcp": 0.0}

    def probe() -> None:
        """On its own thread, so that probes land anywhere between the attacker's bursts."""
        while not done.wait(0.1):
            for path, headers, into in (("/ping", {}, pings), (cached, token, reads)):
                status, _body, ms = _get(port, path, headers)
                statuses.add(status)
                into.append(ms)
            peaks["rss"] = max(peaks["rss"], rss_mb(daemon.pid))
            peaks["tcp"] = max(peaks["tcp"], _tcp_memory_mb())

    prober = threading.Thread(target=probe, daemon=True)
    try:
        assert _get(port, obj, token)[0] == 200 and _get(port, cached, token)[0] == 200
        time.sleep(0.5)
        before, tcp_before = rss_mb(daemon.pid), _tcp_memory_mb()
        until = time.monotonic() + seconds
        prober.start()
        while time.monotonic() < until:
            for fd, _event in poller.poll(0):
                sock, since = stalled.pop(fd)
                poller.unregister(fd)
                lived.append(time.monotonic() - since)
                sock.close()
            while len(stalled) < size:
                sock = _stalled(port, request)
                stalled[sock.fileno()] = (sock, time.monotonic())
                poller.register(sock, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
            if len(idle) < IDLE:
                idle.extend(socket.create_connection(("127.0.0.1", port)) for _ in range(50))
            time.sleep(0.01)
    finally:
        done.set()
        prober.join(30)
        for sock, _since in stalled.values():
            sock.close()
        for sock in idle:
            sock.close()
    time.sleep(2)
    after = rss_mb(daemon.pid)
    metrics = _get(port, "/metrics", token)[1].decode()
    stop(daemon)
    closed = {line.split('"')[1]: int(float(line.split()[-1])) for line in metrics.splitlines()
              if line.startswith("parameters_secrets_sidecar_http_connections_closed_total{")}
    return {"seconds": seconds, "stalled": size, "idle": IDLE, "statuses": sorted(statuses),
            "ping_p50_ms": round(statistics.median(pings), 2),
            "ping_p99_ms": round(statistics.quantiles(pings, n=100, method="inclusive")[98], 2),
            "ping_max_ms": round(max(pings), 2),
            "read_p50_ms": round(statistics.median(reads), 2),
            "read_p99_ms": round(statistics.quantiles(reads, n=100, method="inclusive")[98], 2),
            "read_max_ms": round(max(reads), 2), "probes": len(pings),
            "rss_before_mb": before, "rss_peak_mb": max(before, peaks["rss"]),
            "rss_after_mb": after,
            "tcp_memory_peak_mb": round(max(tcp_before, peaks["tcp"]) - tcp_before, 1),
            "stalled_closed": len(lived),
            "stalled_lived_max_s": round(max(lived), 1) if lived else None, "closed": closed}


def objects(count: int, **env: str) -> dict[str, Any]:
    aws, s3 = FakeAwsThread(), FakeS3Thread()
    port = free_port()
    daemon = start_daemon(daemon_env(aws.url, port, AWS_ENDPOINT_URL_S3=s3.url, **env), cpu=0)
    token = {TOKEN_HEADER: TOKEN}
    try:
        assert _get(port, OBJECT_PATH.format(key="o0"), token)[0] == 200
        before = peak = rss_mb(daemon.pid)
        for index in range(1, count):
            status, body, _ms = _get(port, OBJECT_PATH.format(key=f"o{index}"), token)
            assert status == 200 and len(body) == MIB, status
            peak = max(peak, rss_mb(daemon.pid))
        metrics = _get(port, "/metrics", token)[1].decode()
    finally:
        stop(daemon)
    bound = [line for line in metrics.splitlines()
             if line.startswith("parameters_secrets_sidecar_cache_max_bytes ")]
    return {"objects": count, "bound_mb": int(float(bound[0].split()[1])) // MIB,
            "rss_before_mb": before, "rss_peak_mb": peak}


def measure(seconds: float) -> dict[str, Any]:
    return {"stalled": stalled_readers(seconds),
            "stalled_64": stalled_readers(seconds, max_conn=64),
            "objects_default": objects(400),
            "objects_lambda_128": objects(400, AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128")}


def _stalled_table(s: dict[str, Any]) -> list[str]:
    return [
        "", f"**Stalled readers** ({s['stalled']} connections, `max_conn` + 2, that pipeline "
        f"reads of a cached 1 MiB object and never read, replaced when closed, plus "
        f"{s['idle']:,} idle ones, for {s['seconds']:g} s; a fresh connection every 0.1 s)", "",
        "| measure | value |", "|---|---|",
        f"| /ping p50 / p99 / max | {s['ping_p50_ms']} / {s['ping_p99_ms']} / "
        f"{s['ping_max_ms']} ms |",
        f"| cached read p50 / p99 / max | {s['read_p50_ms']} / {s['read_p99_ms']} / "
        f"{s['read_max_ms']} ms |",
        f"| statuses seen by the probes | {', '.join(map(str, s['statuses']))} |",
        f"| daemon RSS before / peak / 2 s after | {s['rss_before_mb']} / {s['rss_peak_mb']} / "
        f"{s['rss_after_mb']} MB |",
        f"| kernel TCP buffers, peak growth | {s['tcp_memory_peak_mb']} MB |",
        f"| stalled connections closed / longest lived | {s['stalled_closed']:,} / "
        f"{s['stalled_lived_max_s']} s |",
        f"| closed by the daemon, by reason | {json.dumps(s['closed'])} |"]


def report(results: dict[str, Any]) -> list[str]:
    d, lam = results["objects_default"], results["objects_lambda_128"]
    return [
        *_stalled_table(results["stalled"]), *_stalled_table(results["stalled_64"]),
        "", "**400 distinct 1 MiB objects** (RSS of the daemon)", "",
        "| bound | before MB | peak MB |", "|---|---|---|",
        f"| default outside Lambda ({d['bound_mb']} MB) | {d['rss_before_mb']} | "
        f"{d['rss_peak_mb']} |",
        f"| a 128 MB function ({lam['bound_mb']} MB) | {lam['rss_before_mb']} | "
        f"{lam['rss_peak_mb']} |"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    results = measure(args.seconds)
    print(json.dumps(results, indent=2))
    print("\n".join(report(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
