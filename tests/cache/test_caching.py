"""Caching seen from outside: hits make no upstream call, TTLs, refreshNow, bounds, disabling."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Aws, StartDaemon
from tests.support.proxy import FaultProxy


def test_second_read_is_a_hit_with_no_upstream_call(start_daemon: StartDaemon, aws: Aws,
                                                    proxy: FaultProxy, unique: str) -> None:
    name = f"/{unique}/p"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    daemon = start_daemon()
    assert daemon.param(name).headers["X-Cache"] == "miss"
    second = daemon.param(name)
    assert second.headers["X-Cache"] == "hit"
    assert proxy.count(name, "GetParameter") == 1
    secret = f"{unique}/s"
    aws.sm.create_secret(Name=secret, SecretString="s")
    daemon.secret(secret)
    assert daemon.secret(secret).headers["X-Cache"] == "hit"
    assert proxy.count(secret, "GetSecretValue") == 1


def test_entries_expire_after_the_ttl(start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy,
                                      unique: str) -> None:
    name = f"/{unique}/p"
    aws.ssm.put_parameter(Name=name, Type="String", Value="old")
    daemon = start_daemon(SSM_PARAMETER_STORE_TTL="3",
                          PARAMETERS_SECRETS_EXTENSION_REFRESH_AHEAD="0")
    fetched_at = time.monotonic()
    assert daemon.param(name).json()["Parameter"]["Value"] == "old"
    aws.ssm.put_parameter(Name=name, Type="String", Value="new", Overwrite=True)
    still = daemon.param(name)
    if time.monotonic() - fetched_at < 2.7:  # the shortest jittered TTL; a slow machine may not
        assert still.json()["Parameter"]["Value"] == "old"  # still fresh
        assert still.headers["X-Cache"] == "hit"
    deadline = time.monotonic() + 15
    while True:  # past the TTL, the next read fetches again: waiting on the clock is the point
        again = daemon.param(name)
        if again.json()["Parameter"]["Value"] == "new":
            break
        assert time.monotonic() < deadline, "the entry never expired"
        time.sleep(0.1)
    assert again.headers["X-Cache"] == "miss"
    assert time.monotonic() - fetched_at >= 2.7
    assert proxy.count(name) == 2


def test_refresh_now_refetches_and_replaces(start_daemon: StartDaemon, aws: Aws,
                                            proxy: FaultProxy, unique: str) -> None:
    name = f"{unique}/s"
    aws.sm.create_secret(Name=name, SecretString="one")
    daemon = start_daemon()
    daemon.secret(name)
    aws.sm.put_secret_value(SecretId=name, SecretString="two")
    assert daemon.secret(name).json()["SecretString"] == "one"
    refreshed = daemon.secret(name, refreshNow="TRUE")
    assert refreshed.headers["X-Cache"] == "bypass"
    assert refreshed.json()["SecretString"] == "two"
    after = daemon.secret(name)
    assert after.headers["X-Cache"] == "hit"
    assert after.json()["SecretString"] == "two"
    assert daemon.secret(name, refreshNow="0").headers["X-Cache"] == "hit"
    assert proxy.count(name) == 2


def test_refresh_now_failure_returns_the_error(start_daemon: StartDaemon, aws: Aws,
                                               unique: str) -> None:
    name = f"/{unique}/gone"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    daemon = start_daemon()
    assert daemon.param(name).status_code == 200
    aws.ssm.delete_parameter(Name=name)
    failed = daemon.param(name, refreshNow="true")
    assert failed.status_code == 400
    assert failed.json()["__type"] == "ParameterNotFound"


def test_distinct_selectors_are_distinct_entries(start_daemon: StartDaemon, aws: Aws,
                                                 proxy: FaultProxy, unique: str) -> None:
    name = f"/{unique}/p"
    aws.ssm.put_parameter(Name=name, Type="SecureString", Value="v1")
    aws.ssm.put_parameter(Name=name, Type="SecureString", Value="v2", Overwrite=True)
    aws.ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["blue"])
    daemon = start_daemon()
    variants = [{}, {"withDecryption": "true"}, {"version": "1"}, {"label": "blue"},
                {"version": "1", "withDecryption": "true"}]
    for query in variants:
        assert daemon.param(name, **query).headers["X-Cache"] == "miss"
    for query in variants:
        assert daemon.param(name, **query).headers["X-Cache"] == "hit"
    assert proxy.count_matching(name) == len(variants)


def test_item_bound_evicts_the_least_recently_read(start_daemon: StartDaemon, aws: Aws,
                                                   proxy: FaultProxy, unique: str) -> None:
    names = [f"/{unique}/{letter}" for letter in "abc"]
    for name in names:
        aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    a, b, c = names
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE="2")
    daemon.param(a)
    daemon.param(b)
    assert daemon.param(a).headers["X-Cache"] == "hit"  # a read after b: b is the LRU
    daemon.param(c)
    assert daemon.param(a).headers["X-Cache"] == "hit"
    assert daemon.param(b).headers["X-Cache"] == "miss"
    assert proxy.count(b) == 2


def test_byte_bound_evicts_the_least_recently_read(start_daemon: StartDaemon, aws: Aws,
                                                   proxy: FaultProxy, unique: str) -> None:
    # 1 MiB of bodies holds 17 secrets of ~60 KB; the 18th pushes out the least recently read.
    names = [f"{unique}/big{index}" for index in range(18)]
    for index, name in enumerate(names):
        aws.sm.create_secret(Name=name, SecretString=str(index % 10) * 60_000)
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_MAX_CACHE_SIZE="1")
    for name in names[:17]:
        assert daemon.secret(name).headers["X-Cache"] == "miss"
    assert daemon.secret(names[0]).headers["X-Cache"] == "hit"
    daemon.secret(names[17])
    assert daemon.secret(names[0]).headers["X-Cache"] == "hit"
    assert daemon.secret(names[2]).headers["X-Cache"] == "hit"
    assert daemon.secret(names[1]).headers["X-Cache"] == "miss"
    assert proxy.count(names[1]) == 2


@pytest.mark.parametrize("setting", [
    {"PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED": "FALSE"},
    {"PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE": "0"},
    {"SSM_PARAMETER_STORE_TTL": "0", "SECRETS_MANAGER_TTL": "0"},
    {"PARAMETERS_SECRETS_EXTENSION_TTL_SECS": "0"},
])
def test_each_disabling_setting_sends_every_read_upstream(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, unique: str,
        setting: dict[str, str]) -> None:
    name, secret = f"/{unique}/p", f"{unique}/s"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    aws.sm.create_secret(Name=secret, SecretString="s")
    daemon = start_daemon(**setting)
    for _ in range(3):
        assert daemon.param(name).headers["X-Cache"] == "miss"
        assert daemon.secret(secret).headers["X-Cache"] == "miss"
    assert proxy.count(name) == 3
    assert proxy.count(secret) == 3


def test_ttl_zero_for_one_service_only(start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy,
                                       unique: str) -> None:
    name, secret = f"/{unique}/p", f"{unique}/s"
    aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    aws.sm.create_secret(Name=secret, SecretString="s")
    daemon = start_daemon(SECRETS_MANAGER_TTL="0")
    for _ in range(2):
        daemon.param(name)
        daemon.secret(secret)
    assert proxy.count(name) == 1
    assert proxy.count(secret) == 2


def test_errors_are_never_cached(start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy,
                                 unique: str) -> None:
    name = f"/{unique}/later"
    daemon = start_daemon()
    assert daemon.param(name).status_code == 400
    aws.ssm.put_parameter(Name=name, Type="String", Value="now here")
    response = daemon.param(name)
    assert response.status_code == 200
    assert response.json()["Parameter"]["Value"] == "now here"
