"""Group reads, maxAge and transforms (issue 12), over HTTP, counting calls at the proxy."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import aiohttp

from tests.conftest import Aws, StartDaemon
from tests.support.process import TOKEN_HEADER, Daemon
from tests.support.proxy import FaultProxy, Rule


def batch(daemon: Daemon, names: list[str], **query: str) -> tuple[int, dict[str, str], dict]:  # type: ignore[type-arg]
    params = [("name", name) for name in names] + list(query.items())
    response = daemon.get("/systemsmanager/parameters/batch", params=params)
    return response.status_code, dict(response.headers), response.json()


def test_batch_cold_then_warm_and_shared_with_single_reads(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, unique: str) -> None:
    names = [f"/{unique}/p{index:02d}" for index in range(25)]
    for name in names:
        aws.ssm.put_parameter(Name=name, Type="String", Value=f"value of {name}")
    daemon = start_daemon()
    status, headers, body = batch(daemon, names)
    assert status == 200 and headers["X-Cache"] == "miss"
    assert [p["Name"] for p in body["Parameters"]] == names  # request order
    assert body["InvalidParameters"] == [] and body["ResultMetadata"] == {}
    assert all(p["Selector"] is None for p in body["Parameters"])
    assert proxy.count_matching(unique, "GetParameters") == 3
    status, headers, again = batch(daemon, names)
    assert headers["X-Cache"] == "hit" and again == body
    assert proxy.count_matching(unique, "GetParameters") == 3  # warm: no call
    single = daemon.param(names[0])
    assert single.headers["X-Cache"] == "hit"
    assert single.json()["Parameter"] == body["Parameters"][0]
    assert proxy.count_matching(unique, "GetParameter") == 0


def test_batch_fetches_only_what_single_reads_did_not(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, unique: str) -> None:
    names = [f"/{unique}/p{index}" for index in range(6)]
    for name in names:
        aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    daemon = start_daemon()
    for name in names[:4]:
        daemon.param(name)
    batch(daemon, names)
    [call] = [c for c in proxy.calls if c.api == "GetParameters" and unique in c.names[0]]
    assert sorted(call.names) == sorted(names[4:])


def test_invalid_parameters_in_order_with_selectors(
        start_daemon: StartDaemon, aws: Aws, unique: str) -> None:
    name = f"/{unique}/versioned"
    aws.ssm.put_parameter(Name=name, Type="String", Value="one")
    aws.ssm.put_parameter(Name=name, Type="String", Value="two", Overwrite=True)
    daemon = start_daemon()
    wanted = [f"/{unique}/zz-missing", f"{name}:1", name, f"/{unique}/aa-missing"]
    status, _, body = batch(daemon, wanted)
    assert status == 200
    assert [p["Value"] for p in body["Parameters"]] == ["one", "two"]
    assert body["InvalidParameters"] == [f"/{unique}/zz-missing", f"/{unique}/aa-missing"]
    assert daemon.param(name, version="1").headers["X-Cache"] == "hit"


async def test_concurrent_identical_batches_make_one_set_of_calls(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, rules: list[Rule],
        unique: str) -> None:
    names = [f"/{unique}/c{index}" for index in range(15)]
    for name in names:
        aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    gate = proxy.add(Rule(match=unique, kind="gate"))
    rules.append(gate)
    daemon = start_daemon()
    query = "&".join(f"name={name}" for name in names)
    url = f"{daemon.base}/systemsmanager/parameters/batch?{query}"
    async with aiohttp.ClientSession(headers={TOKEN_HEADER: daemon.token}) as session:
        async def one() -> int:
            async with session.get(url) as response:
                await response.read()
                return response.status

        reads = asyncio.gather(*(one() for _ in range(200)))
        await asyncio.to_thread(proxy.wait_held, gate, 2)
        # A /ping on its own connection, behind every request (the session's pool is full).
        async with aiohttp.ClientSession() as other, other.get(f"{daemon.base}/ping") as ping:
            await ping.read()
        proxy.release(gate)
        assert set(await reads) == {200}
    assert proxy.count_matching(unique, "GetParameters") == 2


def test_path_reads_follow_pages_filter_and_warm_single_keys(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, unique: str) -> None:
    for index in range(30):
        aws.ssm.put_parameter(Name=f"/{unique}/app/p{index}", Type="String", Value=f"v{index}")
    for index in range(5):
        aws.ssm.put_parameter(Name=f"/{unique}/app/deep/s{index}", Type="SecureString",
                              Value=f"s{index}")
    daemon = start_daemon()
    response = daemon.get("/systemsmanager/parameters/path",
                          params={"path": f"/{unique}/app", "recursive": "true",
                                  "withDecryption": "true"})
    assert response.status_code == 200, response.text
    parameters = response.json()["Parameters"]
    assert len(parameters) == 35
    assert proxy.count_matching(unique, "GetParametersByPath") == 4  # every page of 10
    warm = daemon.param(f"/{unique}/app/deep/s3", withDecryption="true")
    assert warm.headers["X-Cache"] == "hit"
    assert warm.json()["Parameter"]["Value"] == "s3"
    again = daemon.get("/systemsmanager/parameters/path",
                       params={"path": f"/{unique}/app", "recursive": "true",
                               "withDecryption": "true"})
    assert again.headers["X-Cache"] == "hit"
    flat = daemon.get("/systemsmanager/parameters/path", params={"path": f"/{unique}/app"})
    assert len(flat.json()["Parameters"]) == 30  # not recursive
    secure = daemon.get("/systemsmanager/parameters/path",
                        params={"path": f"/{unique}/app", "recursive": "true",
                                "type": "SecureString"})
    assert sorted(p["Name"] for p in secure.json()["Parameters"]) == \
        [f"/{unique}/app/deep/s{index}" for index in range(5)]


def test_path_reads_past_the_page_bound_are_refused(
        start_daemon: StartDaemon, aws: Aws, unique: str) -> None:
    from sidecar.aws import ssm

    over = ssm.MAX_PATH_PAGES * ssm.PATH_PAGE + 1
    client = aws.ssm
    for index in range(over):
        client.put_parameter(Name=f"/{unique}/big/p{index}", Type="String", Value="v")
    daemon = start_daemon()
    response = daemon.get("/systemsmanager/parameters/path", params={"path": f"/{unique}/big"})
    assert response.status_code == 400
    assert response.json()["__type"] == "TooManyParameters"


def test_batch_secrets_cold_warm_and_errors_by_id(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, unique: str) -> None:
    ids = [f"{unique}/s{index}" for index in range(25)]
    for secret_id in ids:
        aws.sm.create_secret(Name=secret_id, SecretString=f"value of {secret_id}")
    arn = aws.sm.describe_secret(SecretId=ids[0])["ARN"]
    daemon = start_daemon()
    asked = [*ids, f"{unique}/missing", arn]
    response = daemon.get("/secretsmanager/batch", params=[("secretId", i) for i in asked])
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["SecretString"] for s in body["SecretValues"]] == \
        [f"value of {i}" for i in ids] + [f"value of {ids[0]}"]
    assert all(s["SecretBinary"] is None for s in body["SecretValues"])
    [error] = body["Errors"]
    assert error["SecretId"] == f"{unique}/missing"
    assert error["ErrorCode"] == "ResourceNotFoundException"
    calls = proxy.count_matching(unique, "BatchGetSecretValue")
    assert calls == 2
    assert daemon.secret(ids[3]).headers["X-Cache"] == "hit"
    warm = daemon.get("/secretsmanager/batch", params=[("secretId", i) for i in ids])
    assert warm.headers["X-Cache"] == "hit"
    assert proxy.count_matching(unique, "BatchGetSecretValue") == calls


def test_max_age_on_single_batch_and_path(start_daemon: StartDaemon, aws: Aws,
                                          proxy: FaultProxy, unique: str) -> None:
    name = f"/{unique}/aged/p"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    daemon = start_daemon()
    daemon.param(name)
    assert daemon.param(name, maxAge="60").headers["X-Cache"] == "hit"
    fetched = daemon.param(name, maxAge="0")
    assert fetched.headers["X-Cache"] == "miss"
    assert proxy.count(name, "GetParameter") == 2
    status, headers, _ = batch(daemon, [name], maxAge="0")
    assert status == 200
    assert headers["X-Cache"] == "miss" and proxy.count(name, "GetParameters") == 1
    path = {"path": f"/{unique}/aged"}
    daemon.get("/systemsmanager/parameters/path", params=path)
    again = daemon.get("/systemsmanager/parameters/path", params={**path, "maxAge": "0"})
    assert again.headers["X-Cache"] == "miss"
    refreshed = daemon.get("/systemsmanager/parameters/path", params={**path, "refreshNow": "1"})
    assert refreshed.headers["X-Cache"] == "bypass"


def test_transforms_on_single_reads(start_daemon: StartDaemon, aws: Aws, unique: str) -> None:
    aws.ssm.put_parameter(Name=f"/{unique}/cfg.json", Type="String", Value='{"a":{"b":[1,2]}}')
    aws.ssm.put_parameter(Name=f"/{unique}/list", Type="StringList", Value="x,y,z")
    aws.ssm.put_parameter(Name=f"/{unique}/key.binary", Type="String",
                          Value=base64.b64encode(b"\x00\xffkey").decode())
    aws.ssm.put_parameter(Name=f"/{unique}/plain", Type="String", Value="just text")
    aws.sm.create_secret(Name=f"{unique}/db", SecretString='{"user":"app","password":"pw-1"}')
    aws.sm.create_secret(Name=f"{unique}/bin", SecretBinary=b"\x01\x02bytes")
    daemon = start_daemon()
    as_json = daemon.param(f"/{unique}/cfg.json", transform="json")
    assert as_json.headers["Content-Type"].startswith("application/json")
    assert as_json.json() == {"a": {"b": [1, 2]}}
    assert daemon.param(f"/{unique}/cfg.json", jsonKey="a.b.1").json() == 2
    assert daemon.param(f"/{unique}/list", transform="stringlist").json() == ["x", "y", "z"]
    binary = daemon.param(f"/{unique}/key.binary", transform="auto")
    assert binary.content == b"\x00\xffkey"
    assert binary.headers["Content-Type"] == "application/octet-stream"
    raw = daemon.param(f"/{unique}/plain", transform="raw")
    assert raw.text == "just text" and raw.headers["Content-Type"].startswith("text/plain")
    password = daemon.secret(f"{unique}/db", jsonKey="password", transform="raw")
    assert password.text == "pw-1"
    assert daemon.secret(f"{unique}/bin", transform="binary").content == b"\x01\x02bytes"
    assert daemon.secret(f"{unique}/bin", transform="raw").content == b"\x01\x02bytes"
    # Values that do not transform: a 400 naming the item, never the value.
    for response in (daemon.param(f"/{unique}/plain", transform="json"),
                     daemon.param(f"/{unique}/cfg.json", jsonKey="a.nope"),
                     # Not base64 even as Powertools decodes it (skipping ',': 3 characters).
                     daemon.param(f"/{unique}/list", transform="binary"),
                     daemon.secret(f"{unique}/bin", transform="json")):
        assert response.status_code == 400, response.text
        assert response.json()["__type"] == "TransformFailed"
        assert "just text" not in response.text and "bytes" not in response.text


def test_transforms_on_group_reads(start_daemon: StartDaemon, aws: Aws, unique: str) -> None:
    aws.ssm.put_parameter(Name=f"/{unique}/g/a.json", Type="String", Value='{"k":1}')
    aws.ssm.put_parameter(Name=f"/{unique}/g/b", Type="String", Value="text")
    aws.sm.create_secret(Name=f"{unique}/s1", SecretString='{"password":"p1"}')
    daemon = start_daemon()
    _, _, body = batch(daemon, [f"/{unique}/g/a.json", f"/{unique}/g/b"], transform="auto")
    assert [p["Value"] for p in body["Parameters"]] == [{"k": 1}, "text"]
    path = daemon.get("/systemsmanager/parameters/path",
                      params={"path": f"/{unique}/g", "transform": "auto"}).json()
    assert sorted(json.dumps(p["Value"]) for p in path["Parameters"]) == ['"text"', '{"k": 1}']
    secrets = daemon.get("/secretsmanager/batch",
                         params={"secretId": f"{unique}/s1", "jsonKey": "password"}).json()
    assert secrets["SecretValues"][0]["SecretString"] == "p1"
    refused = daemon.get("/secretsmanager/batch",
                         params={"secretId": f"{unique}/s1", "transform": "binary"})
    assert refused.status_code == 400 and "transform" in refused.json()["message"]
    failing = batch(daemon, [f"/{unique}/g/b"], transform="json")
    assert failing[0] == 400 and failing[2]["__type"] == "TransformFailed"


def test_throttling_storm_serves_stale_group_answers(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, rules: list[Rule],
        unique: str) -> None:
    names = [f"/{unique}/st{index}" for index in range(3)]
    for name in names:
        aws.ssm.put_parameter(Name=name, Type="String", Value="old")
    daemon = start_daemon(SSM_PARAMETER_STORE_TTL="1")
    assert batch(daemon, names)[0] == 200
    path = {"path": f"/{unique}"}
    assert daemon.get("/systemsmanager/parameters/path", params=path).status_code == 200
    rules.append(proxy.add(Rule(match=unique, kind="throttle")))
    time.sleep(1.1)  # past the TTL: the storm hits the refetch
    status, headers, body = batch(daemon, names)
    assert status == 200 and headers["X-Cache"] == "stale"
    assert [p["Value"] for p in body["Parameters"]] == ["old"] * 3
    stale_path = daemon.get("/systemsmanager/parameters/path", params=path)
    assert stale_path.status_code == 200 and stale_path.headers["X-Cache"] == "stale"


def test_group_read_limits(shared_daemon: Daemon, proxy: FaultProxy) -> None:
    before = len(proxy.calls)
    too_many = "&".join(f"name=/n{index}" for index in range(101))
    response = shared_daemon.raw(f"/systemsmanager/parameters/batch?{too_many}")
    assert response.status_code == 400 and "at most 100" in response.json()["message"]
    assert shared_daemon.raw("/systemsmanager/parameters/batch").status_code == 400
    assert shared_daemon.raw("/systemsmanager/parameters/path?path=relative").status_code == 400
    assert shared_daemon.raw("/systemsmanager/parameters/get?name=/a&maxAge=-1").status_code == 400
    assert shared_daemon.raw("/systemsmanager/parameters/get?name=/a&transform=x").status_code \
        == 400
    assert len(proxy.calls) == before
