"""S3 objects (issue 12): bytes with their headers, ETag revalidation, size limit, and the same
coalescing and stale-if-error as every read; calls and bytes counted at the proxy."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.conftest import Aws, StartDaemon
from tests.support.process import TOKEN_HEADER, Daemon
from tests.support.proxy import FaultProxy, Rule


def _bucket(aws: Aws, unique: str) -> str:
    bucket = f"b-{unique}"
    aws.s3.create_bucket(Bucket=bucket)
    return bucket


def _get(daemon: Daemon, bucket: str, key: str, **query: str):  # type: ignore[no-untyped-def]
    return daemon.get("/s3/get", params={"bucket": bucket, "key": key, **query})


def test_cold_warm_revalidated_and_changed(start_daemon: StartDaemon, aws: Aws,
                                           proxy: FaultProxy, unique: str) -> None:
    bucket = _bucket(aws, unique)
    body = b'{"feature": true}' * 100
    aws.s3.put_object(Bucket=bucket, Key="conf/app.json", Body=body,
                      ContentType="application/json")
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_S3_TTL="1")
    cold = _get(daemon, bucket, "conf/app.json")
    assert cold.status_code == 200, cold.text
    assert cold.content == body
    assert cold.headers["Content-Type"] == "application/json"
    assert cold.headers["ETag"].startswith('"') and "Last-Modified" in cold.headers
    assert cold.headers["X-Cache"] == "miss"
    warm = _get(daemon, bucket, "conf/app.json")
    assert warm.headers["X-Cache"] == "hit" and warm.content == body
    calls = proxy.count_matching(bucket)
    assert calls == 1
    sent = proxy.bytes_sent(bucket)
    assert sent >= len(body)
    time.sleep(1.1)  # past the TTL: the next read revalidates with the ETag
    again = _get(daemon, bucket, "conf/app.json")
    assert again.content == body and again.headers["X-Cache"] == "miss"
    assert proxy.count_matching(bucket) == calls + 1
    assert proxy.bytes_sent(bucket) == sent  # 304: no body transferred
    changed = b'{"feature": false}'
    aws.s3.put_object(Bucket=bucket, Key="conf/app.json", Body=changed)
    time.sleep(1.1)
    fresh = _get(daemon, bucket, "conf/app.json")
    assert fresh.content == changed


def test_large_objects_arrive_whole(start_daemon: StartDaemon, aws: Aws, unique: str) -> None:
    bucket = _bucket(aws, unique)
    body = bytes(range(256)) * 2000  # 512 KB: many network reads
    aws.s3.put_object(Bucket=bucket, Key="large.bin", Body=body)
    daemon = start_daemon()
    for _ in range(2):  # a miss, then the cached copy
        assert _get(daemon, bucket, "large.bin").content == body


def test_objects_over_the_limit_are_refused_and_not_cached(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, unique: str) -> None:
    bucket = _bucket(aws, unique)
    aws.s3.put_object(Bucket=bucket, Key="big", Body=b"x" * 2048)
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_S3_MAX_OBJECT_BYTES="1024")
    for _ in range(2):
        refused = _get(daemon, bucket, "big")
        assert refused.status_code == 400
        assert refused.json()["__type"] == "ObjectTooLarge"
    assert proxy.count_matching(bucket) == 2  # never cached


def test_missing_objects_and_bad_names(start_daemon: StartDaemon, aws: Aws,
                                       proxy: FaultProxy, unique: str) -> None:
    bucket = _bucket(aws, unique)
    daemon = start_daemon()
    missing = _get(daemon, bucket, "nope")
    assert missing.status_code == 400 and missing.json()["__type"] == "NoSuchKey"
    before = len(proxy.calls)
    assert _get(daemon, "Bad_Bucket", "k").status_code == 400
    assert daemon.get("/s3/get", params={"bucket": bucket}).status_code == 400
    assert len(proxy.calls) == before


async def test_s3_reads_coalesce(start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy,
                                 rules: list[Rule], unique: str) -> None:
    bucket = _bucket(aws, unique)
    aws.s3.put_object(Bucket=bucket, Key="k", Body=b"shared")
    gate = proxy.add(Rule(match=bucket, kind="gate"))
    rules.append(gate)
    daemon = start_daemon()
    url = f"{daemon.base}/s3/get?bucket={bucket}&key=k"
    async with aiohttp.ClientSession(headers={TOKEN_HEADER: daemon.token}) as session:
        async def one() -> bytes:
            async with session.get(url) as response:
                return await response.read()

        reads = asyncio.gather(*(one() for _ in range(50)))
        await asyncio.to_thread(proxy.wait_held, gate, 1)
        async with aiohttp.ClientSession() as other, other.get(f"{daemon.base}/ping") as ping:
            await ping.read()
        proxy.release(gate)
        assert set(await reads) == {b"shared"}
    assert proxy.count_matching(bucket) == 1


def test_s3_serves_stale_in_a_5xx_storm(start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy,
                                        rules: list[Rule], unique: str) -> None:
    bucket = _bucket(aws, unique)
    aws.s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_S3_TTL="1")
    assert _get(daemon, bucket, "k").content == b"kept"
    rules.append(proxy.add(Rule(match=bucket, kind="error500")))
    time.sleep(1.1)
    stale = _get(daemon, bucket, "k")
    assert stale.status_code == 200 and stale.headers["X-Cache"] == "stale"
    assert stale.content == b"kept"


def test_prefetch_of_path_and_s3_items(start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy,
                                       unique: str) -> None:
    bucket = _bucket(aws, unique)
    aws.s3.put_object(Bucket=bucket, Key="conf/a.txt", Body=b"prefetched")
    aws.ssm.put_parameter(Name=f"/{unique}/cfg/x", Type="String", Value="x")
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_PREFETCH=(
        f"s3:{bucket}/conf/a.txt,path:/{unique}/cfg?recursive=true"))
    daemon.wait_for_output("prefetch done")
    calls = len(proxy.calls)
    assert _get(daemon, bucket, "conf/a.txt").headers["X-Cache"] == "hit"
    path = daemon.get("/systemsmanager/parameters/path",
                      params={"path": f"/{unique}/cfg", "recursive": "true"})
    assert path.headers["X-Cache"] == "hit"
    assert path.json()["Parameters"][0]["Value"] == "x"
    assert daemon.param(f"/{unique}/cfg/x").headers["X-Cache"] == "hit"  # warmed by the path
    assert len(proxy.calls) == calls
