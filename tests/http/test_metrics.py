"""Metrics (issue 14): /metrics through the real daemon, every metric's movement, no names or
values in labels, promtool's check, a real Prometheus scraping the daemon, and EMF lines in
Lambda mode checked against the EMF specification's rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Aws, StartDaemon
from tests.support.lambda_api import FakeExtensionsApi
from tests.support.process import Daemon, Process, free_port
from tests.support.proxy import FaultProxy, Rule

PREFIX = "parameters_secrets_sidecar_"


def scrape(daemon: Daemon, bearer: bool = False) -> str:
    headers = {"Authorization": f"Bearer {daemon.token}"} if bearer else {}
    response = daemon.get("/metrics", token=None if bearer else "default", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.text


def value(text: str, name: str, **labels: str) -> float:
    """The sample's value (0 when absent), matching the given labels."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(PREFIX + name + "{") and line.split(" ")[0] != PREFIX + name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_need_the_token_and_accept_bearer(start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    assert daemon.get("/metrics", token=None).status_code == 403
    assert daemon.get("/metrics", token=None,
                      headers={"Authorization": "Bearer wrong"}).status_code == 403
    text = scrape(daemon, bearer=True)
    assert f"{PREFIX}build_info{{" in text


def test_every_metric_moves(start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy,
                            rules: list[Rule], unique: str) -> None:
    name = f"/{unique}/m"
    aws.ssm.put_parameter(Name=name, Type="String", Value="metric-value-1")
    daemon = start_daemon(SSM_PARAMETER_STORE_TTL="1")
    daemon.param(name)
    daemon.param(name)
    text = scrape(daemon)
    assert value(text, "cache_gets_total", service="ssm", result="miss") == 1
    assert value(text, "cache_gets_total", service="ssm", result="hit") == 1
    assert value(text, "upstream_calls_total", service="ssm", operation="GetParameter",
                 outcome="success") == 1
    assert value(text, "upstream_call_duration_seconds_count", service="ssm",
                 operation="GetParameter") == 1
    assert value(text, "cache_entries") == 1
    assert value(text, "http_requests_total",
                 route="/systemsmanager/parameters/get", status="200") == 2
    # A throttled call, then a stale answer, once the entry has expired.
    rules.append(proxy.add(Rule(match=name, kind="throttle")))
    time.sleep(1.1)  # past the TTL: the clock is the point here
    assert daemon.param(name).headers["X-Cache"] == "stale"
    text = scrape(daemon)
    assert value(text, "upstream_calls_total", service="ssm", operation="GetParameter",
                 outcome="throttled") == 1
    assert value(text, "cache_gets_total", service="ssm", result="stale") == 1
    assert value(text, "cache_stale_answers_total", service="ssm") >= 1
    assert daemon.param(f"/{unique}/absent").status_code == 400
    assert value(scrape(daemon), "upstream_calls_total", outcome="client_error") == 1


async def test_coalesced_waits_are_counted(start_daemon: StartDaemon, aws: Aws,
                                           proxy: FaultProxy, rules: list[Rule],
                                           unique: str) -> None:
    import asyncio

    from tests.cache.test_resilience import _gated_burst, _url

    name = f"/{unique}/shared"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    gate = proxy.add(Rule(match=unique, kind="gate"))
    rules.append(gate)
    daemon = start_daemon()
    results = await _gated_burst(daemon, proxy, gate, [_url(daemon, name)] * 20)
    assert {status for status, _, _ in results} == {200}
    text = await asyncio.to_thread(scrape, daemon)
    assert value(text, "cache_deduplicated_loads_total", service="ssm") == 19
    assert value(text, "upstream_calls_total", operation="GetParameter") == 1


def test_evictions_by_bytes(start_daemon: StartDaemon, aws: Aws, unique: str) -> None:
    bucket = f"b-{unique}"
    aws.s3.create_bucket(Bucket=bucket)
    for key in ("one", "two"):
        aws.s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 600_000)
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_MAX_CACHE_SIZE="1",
                          PARAMETERS_SECRETS_EXTENSION_S3_MAX_OBJECT_BYTES="1000000")
    for key in ("one", "two"):
        assert daemon.get("/s3/get", params={"bucket": bucket, "key": key}).status_code == 200
    text = scrape(daemon)
    assert value(text, "cache_evictions_total", cause="bytes") == 1, \
        [line for line in text.splitlines() if "cache_" in line and "#" not in line]
    assert value(text, "cache_max_bytes") == 1024 * 1024


def test_no_name_or_value_in_any_metric(start_daemon: StartDaemon, aws: Aws,
                                        unique: str) -> None:
    name, secret = f"/{unique}/inventory/db-host", f"{unique}/inventory-secret"
    aws.ssm.put_parameter(Name=name, Type="String", Value="value-that-must-not-show")
    aws.sm.create_secret(Name=secret, SecretString="secret-that-must-not-show")
    daemon = start_daemon()
    daemon.param(name)
    daemon.secret(secret)
    daemon.get(f"/v1/{secret}")
    daemon.param(f"/{unique}/missing")
    text = scrape(daemon)
    for needle in (unique, "inventory", "must-not-show", daemon.token, "arn:"):
        assert needle not in text
    assert value(text, "http_requests_total", route="/v1/{secretId}") == 1


def test_promtool_accepts_the_exposition(start_daemon: StartDaemon, aws: Aws,
                                         unique: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed; "
                    "scripts/test-deps installs it as root")
    aws.ssm.put_parameter(Name=f"/{unique}/p", Type="String", Value="v")
    daemon = start_daemon()
    daemon.param(f"/{unique}/p")
    checked = subprocess.run([promtool, "check", "metrics"], input=scrape(daemon),
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus package is not installed; scripts/test-deps "
                    "installs it as root")
    yield binary, tmp_path


def _query(base: str, expression: str) -> float | None:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=5) as answer:
        result = json.loads(answer.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_a_real_prometheus_scrapes_what_the_proxy_counted(
        prometheus: tuple[str, Path], start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy,
        unique: str) -> None:
    binary, folder = prometheus
    names = [f"/{unique}/scraped/{index}" for index in range(5)]
    for name in names:
        aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    daemon = start_daemon()
    for name in names:
        daemon.param(name)
        daemon.param(name)
        daemon.param(name)
    (folder / "token").write_text(daemon.token)
    (folder / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: sidecar
    authorization:
      credentials_file: {folder / 'token'}
    static_configs:
      - targets: ["127.0.0.1:{daemon.port}"]
""")
    port = free_port()
    server = Process([binary, f"--config.file={folder / 'prometheus.yml'}",
                      f"--storage.tsdb.path={folder / 'data'}",
                      f"--web.listen-address=127.0.0.1:{port}"], {"PATH": "/usr/bin:/bin",
                                                                  "HOME": str(folder)})
    base = f"http://127.0.0.1:{port}"
    try:
        hits = misses = calls = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                hits = _query(base, f'sum({PREFIX}cache_gets_total{{result="hit"}})')
                misses = _query(base, f'sum({PREFIX}cache_gets_total{{result="miss"}})')
                calls = _query(base, f"sum({PREFIX}upstream_calls_total)")
            except OSError:
                pass
            if hits == 10 and misses == 5 and calls is not None:
                break
            time.sleep(0.5)
        assert (hits, misses) == (10, 5), server.output[-2000:]
        assert calls == proxy.count_matching(f"/{unique}/scraped/")
    finally:
        server.kill()


def test_emf_lines_in_lambda_mode(start_daemon: StartDaemon, aws: Aws, unique: str) -> None:
    name = f"/{unique}/emf"
    aws.ssm.put_parameter(Name=name, Type="String", Value="emf-value")
    port = free_port()
    api = FakeExtensionsApi(check_port=port).start()
    try:
        daemon = start_daemon(port=str(port), AWS_LAMBDA_RUNTIME_API=api.address,
                              AWS_LAMBDA_FUNCTION_NAME="my-function",
                              PARAMETERS_SECRETS_EXTENSION_METRICS_EMF="true",
                              PARAMETERS_SECRETS_EXTENSION_METRICS_NAMESPACE="Team/Sidecar")
        daemon.param(name)
        daemon.param(name)
        api.invoke()
        deadline = time.monotonic() + 10
        while api.invokes_completed < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        daemon.wait_for_output('"_aws"')
        api.shutdown()
        assert daemon.finish(timeout=5) == 0
    finally:
        api.stop()
    lines = [line for line in daemon.output.splitlines() if '"_aws"' in line]
    assert len(lines) == 2  # one at the invoke (something changed), one at SHUTDOWN
    first = json.loads(lines[0])  # the whole line is the JSON object: no prefix
    for document in map(json.loads, lines):
        meta = document["_aws"]
        assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
        [directive] = meta["CloudWatchMetrics"]
        assert directive["Namespace"] == "Team/Sidecar"
        assert directive["Dimensions"] == [["FunctionName"]]
        assert document["FunctionName"] == "my-function"
        for metric in directive["Metrics"]:
            assert re.fullmatch(r"[A-Za-z0-9]+", metric["Name"])
            assert metric["Unit"] == "Count"
            assert isinstance(document[metric["Name"]], int | float)
        assert set(document) == {"_aws", "FunctionName"} | {m["Name"] for m in
                                                            directive["Metrics"]}
    assert first["CacheHits"] == 1 and first["CacheMisses"] == 1 and first["AwsCalls"] == 1
    second = json.loads(lines[1])
    assert second["CacheHits"] == 0 and second["AwsCalls"] == 0  # deltas
    assert "emf-value" not in daemon.output and unique not in "".join(lines)
