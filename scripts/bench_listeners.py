"""The hit path over each listener of one daemon: 127.0.0.1, [::1] and the Unix socket
(README, "Where it listens"), in the same run, loaded in turns by the same generator.

wrk cannot connect to a Unix socket, so this uses a small keep-alive generator of its own: one
thread, ``connections`` sockets, one request in flight on each, every answer parsed (status and
``Content-Length``). Being Python, it may be the bottleneck at 16 connections; the daemon's CPU
time per request, read from /proc, does not depend on it, and ``daemon_busy`` (the daemon's CPU
seconds per second) says whether the daemon was saturated (``load_busy`` the same for the
generator: both well below 1 means other processes had the cores). Figures are medians of the
turns.
"""

from __future__ import annotations

import selectors
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import TOKEN, TOKEN_HEADER, daemon_env, free_port, parameter_path, start_daemon, stop

Connect = Callable[[], socket.socket]


def _responses(buffer: bytearray) -> int:
    """Complete 200 answers at the start of ``buffer``, removed from it."""
    count = 0
    while True:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return count
        if not buffer.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"not a 200: {bytes(buffer[:40])!r}")
        head = bytes(buffer[:head_end + 2]).lower()  # every header line ends in \r\n
        at = head.index(b"\r\ncontent-length:") + 17
        total = head_end + 4 + int(head[at:head.index(b"\r\n", at)])
        if len(buffer) < total:
            return count
        del buffer[:total]
        count += 1


def load(connect: Connect, request: bytes, connections: int, seconds: float,
         cpu: Callable[[], float]) -> dict[str, float]:
    """Requests/s, p50/p99 latency (ms), the daemon's CPU per request (µs), and the CPU seconds
    per second of the daemon and of this generator, for ``seconds`` of keep-alive GETs on
    ``connections`` connections; ``cpu`` reads the daemon's CPU seconds."""
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytearray] = {}
    sent: dict[socket.socket, float] = {}
    latencies: list[float] = []
    for _ in range(connections):
        sock = connect()
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        buffers[sock] = bytearray()
    cpu_before = cpu()
    own_before = time.process_time()
    started = time.perf_counter()
    end = started + seconds
    for sock in buffers:
        sent[sock] = time.perf_counter()
        sock.send(request)
    try:
        while time.perf_counter() < end:
            for key, _ in selector.select(1.0):
                sock = key.fileobj  # type: ignore[assignment]
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError("the daemon closed a connection")
                buffer = buffers[sock]
                buffer += data
                for _ in range(_responses(buffer)):
                    now = time.perf_counter()
                    latencies.append(now - sent[sock])
                    sent[sock] = now
                    sock.send(request)
        elapsed = time.perf_counter() - started
        cpu_used = cpu() - cpu_before
        own_used = time.process_time() - own_before
    finally:
        for sock in buffers:
            selector.unregister(sock)
            sock.close()
    latencies.sort()
    done = len(latencies)
    return {"rps": round(done / elapsed), "p50_ms": round(latencies[done // 2] * 1000, 3),
            "p99_ms": round(latencies[min(done - 1, done * 99 // 100)] * 1000, 3),
            "cpu_us_per_request": round(cpu_used / done * 1e6, 2),
            "daemon_busy": round(cpu_used / elapsed, 2),
            "load_busy": round(own_used / elapsed, 2)}


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {field: statistics.median(run[field] for run in runs) for field in runs[0]}


def listeners(aws_url: str, seconds: float, rounds: int,
              cpu_secs: Callable[[int], float]) -> dict[str, Any]:
    """One daemon with every listener; each loaded in turns (A, B, C, A, ...) so that drift on
    a shared machine hits all alike. Ratios are of the same turn, then the median."""
    folder = Path(tempfile.mkdtemp(prefix="bench-listeners-"))
    path = folder / "sidecar.sock"
    port = free_port()
    daemon = start_daemon(daemon_env(aws_url, port,
                                     PARAMETERS_SECRETS_EXTENSION_UNIX_SOCKET=str(path)), cpu=0)
    request = (f"GET {parameter_path('/bench/hit')} HTTP/1.1\r\nHost: localhost\r\n"
               f"{TOKEN_HEADER}: {TOKEN}\r\n\r\n").encode()

    def unix() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        return sock

    targets: dict[str, Connect] = {
        "tcp": lambda: socket.create_connection(("127.0.0.1", port)), "unix": unix}
    try:
        socket.create_connection(("::1", port)).close()
        targets["tcp6"] = lambda: socket.create_connection(("::1", port))
    except OSError:
        pass  # no IPv6 loopback here
    results: dict[str, Any] = {"seconds": seconds, "rounds": rounds}
    try:
        cpu = lambda: cpu_secs(daemon.pid)  # noqa: E731
        for connect in targets.values():
            load(connect, request, 16, 0.5, cpu)  # warm up (the first read is a miss)
        for connections in (1, 16):
            turns: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            for _ in range(rounds):
                for name, connect in targets.items():
                    turns[name].append(load(connect, request, connections, seconds, cpu))
            for name in targets:
                results[f"{name}_{connections}"] = _median(turns[name])
            pairs = list(zip(turns["unix"], turns["tcp"], strict=True))
            results[f"unix_over_tcp_rps_{connections}"] = round(
                statistics.median(u["rps"] / t["rps"] for u, t in pairs), 3)
            results[f"unix_over_tcp_cpu_{connections}"] = round(statistics.median(
                u["cpu_us_per_request"] / t["cpu_us_per_request"] for u, t in pairs), 3)
    finally:
        stop(daemon)
        path.unlink(missing_ok=True)
        folder.rmdir()
    results["targets"] = list(targets)
    return results


def report(found: dict[str, Any] | None) -> list[str]:
    """Markdown lines for the results of ``listeners``."""
    if not found:
        return []
    names = {"tcp": "TCP 127.0.0.1", "tcp6": "TCP [::1]", "unix": "Unix socket"}
    lines = ["", f"**Hit path by listener** (one daemon, its listeners loaded in turns, "
             f"{found['rounds']} turns of {found['seconds']:g} s each; a Python keep-alive "
             "generator, since wrk has no Unix sockets)", "",
             "| connections | listener | req/s | p50 / p99 ms | daemon CPU µs/request "
             "| daemon busy | generator busy |", "|---|---|---|---|---|---|---|"]
    for connections in (1, 16):
        for name in found["targets"]:
            run = found[f"{name}_{connections}"]
            lines.append(f"| {connections} | {names[name]} | {run['rps']:g} | {run['p50_ms']} / "
                         f"{run['p99_ms']} | {run['cpu_us_per_request']} | "
                         f"{run['daemon_busy']} | {run['load_busy']} |")
    lines += ["", "Unix socket / TCP 127.0.0.1, same turns: throughput "
              f"{found['unix_over_tcp_rps_1']} (1 connection), {found['unix_over_tcp_rps_16']} "
              f"(16); daemon CPU per request {found['unix_over_tcp_cpu_1']} (1), "
              f"{found['unix_over_tcp_cpu_16']} (16)."]
    return lines
