"""The byte bound fits where the daemon runs (review S3-6): its default follows the Lambda
function's memory, and every cached byte counts, 1 MiB S3 objects included.

RSS figures are measured by ``scripts/bench_slow_readers.py``; the bound asserted here is the
README's worst case for this load, with slack for the allocator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.config import settings as config
from tests.conftest import Aws, StartDaemon
from tests.support.lambda_api import FakeExtensionsApi
from tests.support.process import Daemon, free_port

MIB = 1024 * 1024
OBJECTS = 400
# The README's worst case above the daemon's own RSS for this load at 128 MB: the byte bound
# (16 MB), one object per upstream connection being read (3 x 2 MiB: chunks and their join),
# and allocator slack. Before the fix, the same reads grew RSS by ~400 MB.
RSS_GROWTH_BOUND_MB = 16 + 6 + 24


def _load(**env: str) -> config.Settings:
    return config.load({"AWS_TOKEN": "t", **env})[0]


def test_the_default_byte_bound_follows_the_environment() -> None:
    assert _load().cache_bytes == 64 * MIB  # outside Lambda
    assert _load(AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128").cache_bytes == 16 * MIB
    assert _load(AWS_LAMBDA_FUNCTION_MEMORY_SIZE="10240").cache_bytes == 1280 * MIB
    assert _load(AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
                 PARAMETERS_SECRETS_EXTENSION_MAX_CACHE_SIZE="100").cache_bytes == 100 * MIB
    # A platform value that makes no sense is not a reason to refuse to start.
    assert _load(AWS_LAMBDA_FUNCTION_MEMORY_SIZE="lots").cache_bytes == 64 * MIB


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def extensions_api() -> Iterator[FakeExtensionsApi]:
    api = FakeExtensionsApi(check_port=None).start()
    yield api
    api.stop()


@pytest.mark.timeout(300)
def test_400_distinct_1_mib_objects_in_a_128_mb_function_stay_within_the_bound(
        start_daemon: StartDaemon, extensions_api: FakeExtensionsApi, aws: Aws,
        unique: str) -> None:
    bucket = f"b-{unique}"
    aws.s3.create_bucket(Bucket=bucket)
    aws.s3.put_object(Bucket=bucket, Key="o0", Body=_body(0))
    for index in range(1, OBJECTS):
        aws.s3.put_object(Bucket=bucket, Key=f"o{index}", Body=_body(index))
    daemon: Daemon = start_daemon(port=str(free_port()),
                                  AWS_LAMBDA_RUNTIME_API=extensions_api.address,
                                  AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128")
    try:
        assert extensions_api.registered.wait(10)
        assert _read(daemon, bucket, 0) == _body(0)
        before = peak = _rss_mb(daemon.proc.pid)
        for index in range(1, OBJECTS):
            assert _read(daemon, bucket, index) == _body(index), index
            peak = max(peak, _rss_mb(daemon.proc.pid))
        metrics = daemon.get("/metrics").text
        held = _gauge(metrics, "cache_bytes")
        assert _gauge(metrics, "cache_max_bytes") == 16 * MIB
        assert 14 * MIB <= held <= 16 * MIB  # full, and only to the bound
        assert peak - before <= RSS_GROWTH_BOUND_MB, (before, peak)
    finally:
        aws.s3.delete_objects(Bucket=bucket, Delete={
            "Objects": [{"Key": f"o{index}"} for index in range(OBJECTS)]})


def test_a_path_read_counts_its_body_and_every_member_entry(
        start_daemon: StartDaemon, aws: Aws, unique: str) -> None:
    names = [f"/{unique}/app/p{index}" for index in range(5)]
    for name in names:
        aws.ssm.put_parameter(Name=name, Type="String", Value="x" * 2000)
    daemon = start_daemon()
    path = daemon.get("/systemsmanager/parameters/path", params={"path": f"/{unique}/app"})
    assert path.status_code == 200, path.text
    held = _gauge(daemon.get("/metrics").text, "cache_bytes")
    members = [daemon.param(name) for name in names]
    assert [member.headers["X-Cache"] for member in members] == ["hit"] * 5  # cached entries
    assert held >= len(path.content) + sum(len(member.content) for member in members)


def _body(index: int) -> bytes:
    """1 MiB that differs per object (an answer for the wrong key would not compare equal)."""
    return index.to_bytes(4, "big") * (MIB // 4)


def _read(daemon: Daemon, bucket: str, index: int) -> bytes:
    answer = daemon.get("/s3/get", params={"bucket": bucket, "key": f"o{index}"})
    assert answer.status_code == 200, answer.text
    return answer.content


def _gauge(metrics: str, name: str) -> float:
    prefix = f"parameters_secrets_sidecar_{name} "
    [line] = [line for line in metrics.splitlines() if line.startswith(prefix)]
    return float(line.split()[1])
