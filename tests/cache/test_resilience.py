"""Resilience under load and faults, through the fault-injecting proxy in front of moto."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from sidecar.aws.upstream import TOTAL_ATTEMPTS
from tests.conftest import Aws, StartDaemon
from tests.support.process import TOKEN_HEADER, Daemon
from tests.support.proxy import FaultProxy, Rule


def _url(daemon: Daemon, name: str) -> str:
    return f"{daemon.base}/systemsmanager/parameters/get?name={name}"


async def _burst(daemon: Daemon, urls: list[str], limit: int) -> list[tuple[int, str, bytes]]:
    """GET every URL with at most ``limit`` in flight: (status, X-Cache, body) for each."""
    connector = aiohttp.TCPConnector(limit=limit)
    headers = {TOKEN_HEADER: daemon.token}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async def one(url: str) -> tuple[int, str, bytes]:
            async with session.get(url) as response:
                return response.status, response.headers.get("X-Cache", ""), await response.read()

        return await asyncio.gather(*(one(url) for url in urls))


async def _gated_burst(daemon: Daemon, proxy: FaultProxy, gate: Rule,
                       urls: list[str]) -> list[tuple[int, str, bytes]]:
    """All ``urls`` at once while AWS holds the first call at ``gate``; released only once
    every request is in the daemon (sent, then a /ping round trip behind them)."""
    sent = 0

    async def on_sent(*_: object) -> None:
        nonlocal sent
        sent += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_sent)
    connector = aiohttp.TCPConnector(limit=len(urls))
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace],
                                     headers={TOKEN_HEADER: daemon.token}) as session:
        async def one(url: str) -> tuple[int, str, bytes]:
            async with session.get(url) as response:
                return response.status, response.headers.get("X-Cache", ""), await response.read()

        burst = asyncio.gather(*(one(url) for url in urls))
        await asyncio.to_thread(proxy.wait_held, gate, 1)
        deadline = time.monotonic() + 30
        while sent < len(urls):
            assert time.monotonic() < deadline, f"only {sent} of {len(urls)} requests were sent"
            await asyncio.sleep(0.005)
        async with aiohttp.ClientSession() as other, other.get(daemon.base + "/ping") as ping:
            assert await ping.text() == "healthy"
        proxy.release(gate)
        return await burst


async def test_concurrent_cold_reads_make_one_upstream_call(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, rules: list[Rule],
        unique: str) -> None:
    name = f"/{unique}/hot"
    aws.ssm.put_parameter(Name=name, Type="String", Value="shared")
    gate = proxy.add(Rule(match=unique, kind="gate"))
    rules.append(gate)
    daemon = start_daemon()
    results = await _gated_burst(daemon, proxy, gate, [_url(daemon, name)] * 500)
    assert proxy.count(name) == 1
    assert {status for status, _, _ in results} == {200}
    assert len({body for _, _, body in results}) == 1
    assert Counter(state for _, state, _ in results)["miss"] >= 1


async def test_concurrent_failures_are_shared_too(start_daemon: StartDaemon, proxy: FaultProxy,
                                                  rules: list[Rule], unique: str) -> None:
    gate = proxy.add(Rule(match=unique, kind="gate"))
    rules.append(gate)
    daemon = start_daemon()
    results = await _gated_burst(daemon, proxy, gate, [_url(daemon, f"/{unique}/absent")] * 200)
    assert proxy.count(f"/{unique}/absent") == 1
    assert {status for status, _, _ in results} == {400}
    assert {body for _, _, body in results} == {results[0][2]}
    assert b"ParameterNotFound" in results[0][2]


def test_refresh_ahead_keeps_a_busy_key_hot(start_daemon: StartDaemon, aws: Aws,
                                            proxy: FaultProxy, rules: list[Rule],
                                            unique: str) -> None:
    name = f"/{unique}/busy"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    rules.append(proxy.add(Rule(match=unique, kind="delay", seconds=0.2)))
    daemon = start_daemon(SSM_PARAMETER_STORE_TTL="2")
    assert daemon.param(name).headers["X-Cache"] == "miss"
    states: Counter[str] = Counter()
    duration = 10.0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        states[daemon.param(name).headers["X-Cache"]] += 1
        time.sleep(0.05)
    assert set(states) == {"hit"}, states  # never a miss, never stale: nobody waited for AWS
    # The latency readers see is measured by scripts/bench, not asserted on a shared machine.
    calls = proxy.count(name)
    # One call per refresh: every 0.8 x TTL (less up to 10% jitter) of the 10 s, plus the first.
    assert duration / 2 <= calls <= duration / (2 * 0.8 * 0.9) + 2, calls


def test_keys_nobody_reads_are_not_refreshed(start_daemon: StartDaemon, aws: Aws,
                                             proxy: FaultProxy, unique: str) -> None:
    name = f"/{unique}/idle"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    daemon = start_daemon(SSM_PARAMETER_STORE_TTL="1")
    daemon.param(name)
    time.sleep(2.5)  # several TTLs with no reader
    assert proxy.count(name) == 1


def _expire_then_storm(daemon: Daemon, aws: Aws, proxy: FaultProxy, name: str,
                       storm_secs: float) -> Rule:
    assert daemon.param(name).headers["X-Cache"] == "miss"
    aws.ssm.put_parameter(Name=name, Type="String", Value="new", Overwrite=True)
    time.sleep(1.1)  # past the 1 s TTL
    return proxy.add(Rule(match=name, kind="throttle", until=time.monotonic() + storm_secs))


def test_throttling_storm_serves_stale_then_recovers(start_daemon: StartDaemon, aws: Aws,
                                                     proxy: FaultProxy, rules: list[Rule],
                                                     unique: str) -> None:
    name = f"/{unique}/stale"
    aws.ssm.put_parameter(Name=name, Type="String", Value="old")
    daemon = start_daemon(SSM_PARAMETER_STORE_TTL="1")
    rules.append(_expire_then_storm(daemon, aws, proxy, name, storm_secs=5))
    storm_end = rules[0].until
    stale_reads = 0
    while True:
        response = daemon.param(name)
        if time.monotonic() >= storm_end:
            break  # this read may have reached AWS after the storm
        assert response.status_code == 200
        assert response.headers["X-Cache"] == "stale"
        assert response.json()["Parameter"]["Value"] == "old"
        stale_reads += 1
        time.sleep(0.1)
    assert stale_reads >= 10
    # Backing off: far fewer upstream attempts than reads during the storm.
    assert proxy.count(name) < stale_reads
    deadline = time.monotonic() + 15
    while True:
        response = daemon.param(name)
        if response.headers["X-Cache"] != "stale":
            break
        assert time.monotonic() < deadline, "the stale value was never replaced"
        time.sleep(0.1)
    # Replaced: by this read, or by the one that ended the storm loop.
    assert response.headers["X-Cache"] in ("miss", "hit")
    assert response.json()["Parameter"]["Value"] == "new"


def test_without_stale_if_error_the_throttling_error_is_returned(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, rules: list[Rule],
        unique: str) -> None:
    name = f"/{unique}/nostale"
    aws.ssm.put_parameter(Name=name, Type="String", Value="old")
    daemon = start_daemon(SSM_PARAMETER_STORE_TTL="1",
                          PARAMETERS_SECRETS_EXTENSION_STALE_IF_ERROR_SECS="0")
    rules.append(_expire_then_storm(daemon, aws, proxy, name, storm_secs=30))
    response = daemon.param(name)
    assert response.status_code == 400
    assert response.json() == {"__type": "ThrottlingException", "message": "Rate exceeded"}


def test_refresh_now_never_falls_back_to_stale(start_daemon: StartDaemon, aws: Aws,
                                               proxy: FaultProxy, rules: list[Rule],
                                               unique: str) -> None:
    name = f"/{unique}/forced"
    aws.ssm.put_parameter(Name=name, Type="String", Value="old")
    daemon = start_daemon(SSM_PARAMETER_STORE_TTL="1")
    rules.append(_expire_then_storm(daemon, aws, proxy, name, storm_secs=30))
    assert daemon.param(name, refreshNow="true").json()["__type"] == "ThrottlingException"


def test_definite_errors_drop_the_entry(start_daemon: StartDaemon, aws: Aws,
                                        unique: str) -> None:
    name = f"/{unique}/deleted"
    aws.ssm.put_parameter(Name=name, Type="String", Value="old")
    daemon = start_daemon(SSM_PARAMETER_STORE_TTL="1")
    daemon.param(name)
    aws.ssm.delete_parameter(Name=name)
    time.sleep(1.1)
    assert daemon.param(name).json()["__type"] == "ParameterNotFound"
    assert daemon.param(name).json()["__type"] == "ParameterNotFound"  # not stale either


@pytest.mark.parametrize(("kind", "status", "code", "bound_ms"), [
    # Three attempts with backoff (up to 1 s, then 2 s) fit in 5 s ...
    ("error500", 500, "InternalServerError", 5000),
    ("drop", 502, "UpstreamUnavailable", 5000),
    # ... and an upstream that never answers is cut at the bound, retries included.
    ("delay", 504, "UpstreamTimeout", 1500),
])
def test_transient_faults_are_retried_then_stale_or_the_spec_error(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, rules: list[Rule],
        unique: str, kind: str, status: int, code: str, bound_ms: int) -> None:
    cached, fresh = f"/{unique}/cached", f"/{unique}/fresh"
    for name in (cached, fresh):
        aws.ssm.put_parameter(Name=name, Type="String", Value=f"value of {name}")
    other = f"{unique}-intact"
    aws.sm.create_secret(Name=other, SecretString=f"value of {other}")
    daemon = start_daemon(SSM_PARAMETER_STORE_TTL="1",
                          SSM_PARAMETER_STORE_TIMEOUT_MILLIS=str(bound_ms))
    daemon.param(cached)
    daemon.secret(other)  # fresh for the default 300 s
    time.sleep(1.1)
    rules.append(proxy.add(Rule(match=f"/{unique}/", kind=kind, seconds=30)))
    started = time.monotonic()
    stale = daemon.param(cached)
    assert stale.headers["X-Cache"] == "stale"
    assert stale.json()["Parameter"]["Value"] == f"value of {cached}"
    failed = daemon.param(fresh)
    assert failed.status_code == status
    assert failed.json()["__type"] == code
    assert time.monotonic() - started < 2 * bound_ms / 1000 + 1  # each read within its bound
    if kind != "delay":
        assert 2 <= proxy.count(fresh) <= TOTAL_ATTEMPTS  # retried, but bounded
    assert daemon.proc.poll() is None
    hit = daemon.secret(other)
    assert hit.headers["X-Cache"] == "hit"  # the cache is intact
    assert hit.json()["SecretString"] == f"value of {other}"


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_flood_of_distinct_misses_stays_bounded(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, rules: list[Rule],
        unique: str) -> None:
    # The proxy answers "not found" itself, so the flood measures the daemon, not moto.
    flood = f"/{unique}/flood"
    rules.append(proxy.add(Rule(match=flood, kind="error", code="ParameterNotFound")))
    good = f"/{unique}/good"
    aws.ssm.put_parameter(Name=good, Type="String", Value="still here")
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS="20")
    assert daemon.param(good).status_code == 200
    await _burst(daemon, [_url(daemon, f"{flood}/warm{i}") for i in range(2000)], limit=200)
    before = _rss_kb(daemon.proc.pid)
    statuses: Counter[int] = Counter()
    non_json = 0
    for start in range(0, 100_000, 20_000):
        urls = [_url(daemon, f"{flood}/{i}") for i in range(start, start + 20_000)]
        for status, _, body in await _burst(daemon, urls, limit=200):
            statuses[status] += 1
            non_json += not body.startswith(b'{"__type":')
    after = _rss_kb(daemon.proc.pid)
    assert sum(statuses.values()) == 100_000
    assert all(400 <= status < 600 for status in statuses), statuses
    assert non_json == 0
    # Order of magnitude only (scripts/bench measures the 10 MB target): before the reference
    # cycles were broken, this flood grew the daemon by over 100 MB.
    assert after - before < 50 * 1024, (before, after)
    response = daemon.param(good)
    assert response.headers["X-Cache"] == "hit"
    assert response.json()["Parameter"]["Value"] == "still here"


async def test_shutdown_under_load_finishes_or_refuses_cleanly(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, rules: list[Rule],
        unique: str) -> None:
    names = [f"/{unique}/p{i}" for i in range(20)]
    for name in names:
        aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    rules.append(proxy.add(Rule(match=unique, kind="delay", seconds=0.4)))
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS="20")
    burst = asyncio.ensure_future(_burst(daemon, [_url(daemon, n) for n in names * 5], limit=100))
    deadline = time.monotonic() + 15
    while proxy.count_matching(unique) < 5:
        assert time.monotonic() < deadline, "the reads never reached AWS"
        await asyncio.sleep(0.01)
    stopped_at = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    try:
        results = await burst
    except aiohttp.ClientError:
        pytest.fail("a reader saw a broken connection instead of an answer")
    assert await asyncio.to_thread(daemon.finish) == 0
    # Order of magnitude only (the SPEC's 2 s is measured by scripts/bench): the drain is
    # bounded, not waiting for every queued read.
    assert time.monotonic() - stopped_at < 10
    for status, _, body in results:
        assert status == 200 or (status == 503 and b"ShuttingDown" in body), (status, body)
    assert any(status == 200 for status, _, _ in results)


async def test_queued_fetches_past_their_timeout_get_a_clean_504(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, rules: list[Rule],
        unique: str) -> None:
    names = [f"/{unique}/q{i}" for i in range(8)]
    for name in names:
        aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    rules.append(proxy.add(Rule(match=unique, kind="delay", seconds=0.3)))
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS="1",
                          SSM_PARAMETER_STORE_TIMEOUT_MILLIS="1000")
    results = await _burst(daemon, [_url(daemon, name) for name in names], limit=8)
    statuses = Counter(status for status, _, _ in results)
    # One fetch at a time, 0.3 s each: about three fit in the 1 s bound, the rest time out
    # while queued, and say so cleanly.
    assert statuses[200] >= 1
    assert statuses[504] >= 1
    assert set(statuses) == {200, 504}
    assert all(b'"UpstreamTimeout"' in body for status, _, body in results if status == 504)
    assert proxy.peak_concurrency(unique) == 1
