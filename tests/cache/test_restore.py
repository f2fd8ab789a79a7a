"""A snapshot restore, simulated for real (review finding S3-4): the daemon runs under
libfaketime, whose wall clock a test moves forward while the monotonic clock carries on, as it
does when a SnapStart snapshot or a suspended VM is resumed days later."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Aws, StartDaemon
from tests.support.process import Daemon
from tests.support.proxy import FaultProxy, Rule

FAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))),
                Path("/nonexistent"))
pytestmark = pytest.mark.skipif(
    not FAKETIME.exists(),
    reason="libfaketime is not installed (Debian: apt-get install libfaketime; "
           "scripts/test-deps installs it as root)")


@pytest.fixture
def clock_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "faketime"
    path.write_text("+0\n")
    yield path


def _restored_daemon(start_daemon: StartDaemon, clock_file: Path) -> Daemon:
    return start_daemon(
        LD_PRELOAD=str(FAKETIME), FAKETIME_TIMESTAMP_FILE=str(clock_file),
        FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1",
        SSM_PARAMETER_STORE_TTL="100", PARAMETERS_SECRETS_EXTENSION_STALE_IF_ERROR_SECS="3600",
        PARAMETERS_SECRETS_EXTENSION_REFRESH_AHEAD="0")


def test_nothing_from_before_a_long_restore_is_served(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, rules: list[Rule],
        clock_file: Path, unique: str) -> None:
    name = f"/{unique}/k"
    aws.ssm.put_parameter(Name=name, Type="String", Value="value before snapshot")
    daemon = _restored_daemon(start_daemon, clock_file)
    assert daemon.param(name).headers["X-Cache"] == "miss"
    assert daemon.param(name).headers["X-Cache"] == "hit"
    clock_file.write_text("+30d\n")  # thawed 30 days later
    rules.append(proxy.add(Rule(match=name, kind="throttle")))
    refused = daemon.param(name)
    # 30 days is far past TTL + STALE_IF_ERROR_SECS: AWS's error, never the old value.
    assert (refused.status_code, refused.json()["__type"]) == (400, "ThrottlingException")
    assert b"value before snapshot" not in refused.content


def test_a_short_restore_serves_stale_with_a_true_age(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, rules: list[Rule],
        clock_file: Path, unique: str) -> None:
    name = f"/{unique}/k"
    aws.ssm.put_parameter(Name=name, Type="String", Value="kept")
    daemon = _restored_daemon(start_daemon, clock_file)
    assert daemon.param(name).headers["X-Cache"] == "miss"
    clock_file.write_text("+600\n")  # 10 minutes: past the TTL, within the stale window
    rules.append(proxy.add(Rule(match=name, kind="throttle")))
    stale = daemon.param(name)
    assert (stale.status_code, stale.headers["X-Cache"]) == (200, "stale")
    assert stale.json()["Parameter"]["Value"] == "kept"
    assert 600 <= int(stale.headers["Age"]) < 700  # the time it really spent in the cache
