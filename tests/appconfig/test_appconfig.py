"""The AppConfig agent's API on its own port (issue 25; README "AppConfig (port 2772)"), over
real HTTP against the real daemon, AppConfig Data faked on its real wire protocol behind the
fault proxy: reads cold, warm and after the poll interval, stale on a late or throttled poll,
one session for concurrent cold reads, AWS's errors, the shared cache, settings."""

from __future__ import annotations

import itertools
import socket
import threading
import time

import requests

from tests.conftest import StartDaemon
from tests.support.appconfig_served import AppConfigAws, StartServed, metric, until
from tests.support.proxy import Rule

START, LATEST = "StartConfigurationSession", "GetLatestConfiguration"


def test_cold_warm_and_after_the_poll_interval(start_served: StartServed,
                                               appconfig_aws: AppConfigAws, unique: str) -> None:
    fake = appconfig_aws.fake
    fake.deploy("app", "prod", unique, b'{"level": 1}', label="first")
    served = start_served()
    cold = served.get("app", "prod", unique)
    assert cold.status_code == 200
    assert cold.content == b'{"level": 1}'
    assert cold.headers["Content-Type"] == "application/json"
    assert cold.headers["Configuration-Version"] == "1"
    assert cold.headers["Version-Label"] == "first"
    assert cold.headers["X-Cache"] == "miss"
    assert (fake.count(START, unique), fake.count(LATEST, unique)) == (1, 1)
    for _ in range(20):  # within the interval: from memory, no call
        warm = served.get("app", "prod", unique)
        assert (warm.headers["X-Cache"], warm.content) == ("hit", b'{"level": 1}')
    assert (fake.count(START, unique), fake.count(LATEST, unique)) == (1, 1)
    # After the interval, nothing deployed: one GetLatestConfiguration, empty: cached bytes.
    until(lambda: served.get("app", "prod", unique),
          lambda r: fake.count(LATEST, unique) == 2)
    again = served.get("app", "prod", unique)
    assert again.content == b'{"level": 1}'
    assert again.headers["Configuration-Version"] == "1"
    fake.deploy("app", "prod", unique, b'{"level": 2}', content_type="application/x-custom")
    changed = until(lambda: served.get("app", "prod", unique),
                    lambda r: r.headers["X-Cache"] == "miss")
    assert changed.content == b'{"level": 2}'
    assert changed.headers["Content-Type"] == "application/x-custom"
    assert changed.headers["Configuration-Version"] == "2"
    assert "Version-Label" not in changed.headers
    assert fake.count(START, unique) == 1  # one session all along
    assert served.get("app", "prod", unique).headers["X-Cache"] == "hit"
    by_ids = served.get("app-app", "env-prod", f"prof-{unique}")  # ids work as names do
    assert by_ids.content == b'{"level": 2}'
    text = served.daemon.get("/metrics")
    assert text.status_code == 200
    assert metric(served.daemon, "upstream_calls_total", service="appconfig",
                  operation=LATEST, outcome="success") >= 3
    assert metric(served.daemon, "cache_gets_total", service="appconfig", result="hit") >= 20
    assert unique not in text.text  # names never in labels


def test_concurrent_cold_reads_start_one_session(start_served: StartServed,
                                                 appconfig_aws: AppConfigAws,
                                                 unique: str) -> None:
    appconfig_aws.fake.deploy("app", "prod", unique, b"shared")
    served = start_served(AWS_APPCONFIG_EXTENSION_POLL_TIMEOUT_MILLIS="20000")
    gate = appconfig_aws.add(Rule(match="/configurationsessions", kind="gate",
                                  apis=("S3.POST",)))
    results: list[requests.Response] = []
    readers = [threading.Thread(target=lambda: results.append(served.get("app", "prod", unique)))
               for _ in range(20)]
    readers[0].start()
    appconfig_aws.proxy.wait_held(gate, 1)
    for reader in readers[1:]:
        reader.start()
    deadline = time.monotonic() + 10
    while metric(served.daemon, "cache_deduplicated_loads_total", service="appconfig") < 19:
        assert time.monotonic() < deadline, "the readers never joined the flight"
        time.sleep(0.02)
    appconfig_aws.proxy.release(gate)
    for reader in readers:
        reader.join(10)
    assert [r.content for r in results] == [b"shared"] * 20
    assert appconfig_aws.fake.count(START, unique) == 1
    assert appconfig_aws.fake.count(LATEST, unique) == 1


def test_a_late_poll_serves_the_cached_value(start_served: StartServed,
                                             appconfig_aws: AppConfigAws, unique: str) -> None:
    fake = appconfig_aws.fake
    fake.deploy("app", "prod", unique, b"old")
    served = start_served(AWS_APPCONFIG_EXTENSION_POLL_TIMEOUT_MILLIS="300")
    assert served.get("app", "prod", unique).content == b"old"
    fake.deploy("app", "prod", unique, b"new")
    appconfig_aws.add(Rule(match="/configuration", kind="delay", seconds=1.5, apis=("S3.GET",)))
    started = time.monotonic()
    stale = until(lambda: served.get("app", "prod", unique),
                  lambda r: r.headers["X-Cache"] != "hit")
    assert (stale.status_code, stale.headers["X-Cache"], stale.content) == (200, "stale", b"old")
    assert time.monotonic() - started < 5
    assert metric(served.daemon, "cache_stale_answers_total", service="appconfig",
                  reason="poll_timeout") == 1
    # The late poll goes on in the background and lands.
    landed = until(lambda: served.get("app", "prod", unique), lambda r: r.content == b"new")
    assert landed.headers["Configuration-Version"] == "2"


def test_a_throttled_poll_serves_the_cached_value(start_served: StartServed,
                                                  appconfig_aws: AppConfigAws,
                                                  unique: str) -> None:
    fake = appconfig_aws.fake
    fake.deploy("app", "prod", unique, b"kept")
    served = start_served(AWS_APPCONFIG_EXTENSION_POLL_TIMEOUT_MILLIS="30000")
    assert served.get("app", "prod", unique).content == b"kept"
    throttle = appconfig_aws.add(Rule(match="/configuration", kind="throttle",
                                      apis=("S3.GET",)))
    stale = until(lambda: served.get("app", "prod", unique),
                  lambda r: r.headers["X-Cache"] != "hit")
    assert (stale.status_code, stale.headers["X-Cache"], stale.content) == (200, "stale", b"kept")
    assert metric(served.daemon, "cache_stale_answers_total", service="appconfig",
                  reason="upstream_error") == 1
    assert metric(served.daemon, "upstream_calls_total", service="appconfig",
                  operation=LATEST, outcome="throttled") == 1
    appconfig_aws.proxy.remove(throttle)
    fake.deploy("app", "prod", unique, b"after")
    # The throttled interval is skipped; the next poll starts a new session (its token may
    # have been spent) and gets the new version.
    assert until(lambda: served.get("app", "prod", unique),
                 lambda r: r.content == b"after").status_code == 200
    assert fake.count(START, unique) == 2


def test_missing_application_environment_and_profile(start_served: StartServed,
                                                      appconfig_aws: AppConfigAws,
                                                      unique: str) -> None:
    appconfig_aws.fake.deploy(unique, "prod", "cfg", b"x")
    served = start_served()
    for path, kind in (((f"{unique}-no", "prod", "cfg"), "Application"),
                       ((unique, "staging", "cfg"), "Environment"),
                       ((unique, "prod", "nope"), "ConfigurationProfile")):
        response = served.get(*path)
        assert response.status_code == 404
        assert response.headers["X-Amzn-ErrorType"] == "ResourceNotFoundException"
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["ResourceType"] == kind
        assert response.json()["Message"] == f"{kind} not found"
    assert served.get(unique, "prod", "cfg").status_code == 200


def test_the_request_rules(start_served: StartServed, appconfig_aws: AppConfigAws,
                           unique: str) -> None:
    appconfig_aws.fake.deploy("app", "prod", unique, b"body")
    served = start_served()
    assert served.get("app", "prod", unique).status_code == 200  # no token needed
    head = requests.head(served.url("app", "prod", unique), timeout=10)
    assert (head.status_code, head.content, head.headers["Content-Length"]) == (200, b"", "4")
    assert requests.post(served.url("app", "prod", unique), timeout=10).status_code == 405
    assert served.get("app", "prod", unique, "?other=1").status_code == 400
    assert served.get("app", "prod", unique,
                      headers={"X-Forwarded-For": "10.0.0.1"}).status_code == 400
    assert requests.get(f"http://127.0.0.1:{served.port}/applications/app", timeout=10
                        ).status_code == 404
    assert metric(served.daemon, "http_requests_total", status="405",
                  route="/applications/{application}/environments/{environment}/"
                        "configurations/{profile}") == 1


def test_configurations_share_the_cache_byte_bound(start_served: StartServed,
                                                   appconfig_aws: AppConfigAws,
                                                   unique: str) -> None:
    fake = appconfig_aws.fake
    big = b"x" * (700 * 1024)
    fake.deploy("app", "prod", f"{unique}-a", big)
    fake.deploy("app", "prod", f"{unique}-b", big)
    served = start_served(PARAMETERS_SECRETS_EXTENSION_MAX_CACHE_SIZE="1")
    assert served.get("app", "prod", f"{unique}-a").content == big
    assert served.get("app", "prod", f"{unique}-b").content == big  # evicts a: 1 MB bound
    assert metric(served.daemon, "cache_bytes") <= 1024 * 1024
    assert metric(served.daemon, "cache_evictions_total", cause="bytes") == 1
    again = served.get("app", "prod", f"{unique}-a")
    assert (again.headers["X-Cache"], again.content) == ("miss", big)
    assert fake.count(START, f"{unique}-a") == 2  # evicted: a new session for its bytes


def test_role_arn_reads_as_that_role(start_served: StartServed, appconfig_aws: AppConfigAws,
                                     unique: str) -> None:
    appconfig_aws.fake.deploy("app", "prod", unique, b"other account")
    served = start_served(AWS_APPCONFIG_EXTENSION_ROLE_ARN="arn:aws:iam::111122223333:role/cfg")
    assert served.get("app", "prod", unique).content == b"other account"
    assert metric(served.daemon, "upstream_calls_total", service="sts",
                  operation="AssumeRole", outcome="success") == 1


def test_settings_are_validated(start_served: StartServed) -> None:
    for variable, value, allowed in (
            ("AWS_APPCONFIG_EXTENSION_POLL_INTERVAL_SECONDS", "0", "from 1 to 86400"),
            ("AWS_APPCONFIG_EXTENSION_POLL_TIMEOUT_MILLIS", "soon", "from 1 to 600000"),
            ("AWS_APPCONFIG_EXTENSION_MAX_CONNECTIONS", "0", "from 1 to 1000"),
            ("AWS_APPCONFIG_EXTENSION_PREFETCH_LIST", "/applications/a", "/applications/<"),
            ("AWS_APPCONFIG_EXTENSION_LOG_LEVEL", "loud", "one of debug")):
        served = start_served(wait=False, **{variable: value})
        assert served.daemon.finish() == 2
        line = served.daemon.output.strip().splitlines()[-1]
        assert variable in line and value in line and allowed in line


def test_opt_in_outside_lambda_and_a_taken_port(start_daemon: StartDaemon,
                                                start_served: StartServed) -> None:
    assert "appconfig=off" in start_daemon().output  # standalone: off unless asked for
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        served = start_served(wait=False, appconfig_port=str(taken))
        assert served.daemon.finish() == 1  # asked for: a taken port stops the start
        assert f"cannot listen on 127.0.0.1:{taken} (AWS_APPCONFIG_EXTENSION_HTTP_PORT)" in \
            served.daemon.output


def test_max_connections_bounds_calls_in_flight(start_served: StartServed,
                                                appconfig_aws: AppConfigAws,
                                                unique: str) -> None:
    profiles = [f"{unique}-{index}" for index in range(3)]
    for profile in profiles:
        appconfig_aws.fake.deploy("app", "prod", profile, profile.encode())
    served = start_served(AWS_APPCONFIG_EXTENSION_MAX_CONNECTIONS="1",
                          AWS_APPCONFIG_EXTENSION_POLL_TIMEOUT_MILLIS="20000")
    gate = appconfig_aws.add(Rule(match="/configurationsessions", kind="gate",
                                  apis=("S3.POST",)))
    since = time.monotonic()
    results: list[bytes] = []
    readers = [threading.Thread(target=lambda p=profile: results.append(
        served.get("app", "prod", p).content)) for profile in profiles]
    for reader in readers:
        reader.start()
    appconfig_aws.proxy.wait_held(gate, 1)
    window = time.monotonic() + 0.3  # without the bound, all three arrive at once
    while time.monotonic() < window:
        assert gate.held == 1
        time.sleep(0.01)
    appconfig_aws.proxy.release(gate)
    for reader in readers:
        reader.join(10)
    assert sorted(results) == sorted(profile.encode() for profile in profiles)
    spans = [(call.at, call.end) for call in list(appconfig_aws.proxy.calls) if call.at >= since]
    assert len(spans) == 6  # a session and a fetch each, one after the other
    assert all(end <= later for (_, end), (later, _) in itertools.pairwise(spans))


def test_a_refused_token_starts_a_new_session_and_a_deleted_one_is_gone(
        start_served: StartServed, appconfig_aws: AppConfigAws, unique: str) -> None:
    fake = appconfig_aws.fake
    fake.deploy("app", "prod", unique, b"v1")
    served = start_served()
    assert served.get("app", "prod", unique).content == b"v1"
    fake.expire_sessions()  # the token the daemon holds is refused at its next poll
    renewed = until(lambda: served.get("app", "prod", unique),
                    lambda r: fake.count(START, unique) == 2)
    assert (renewed.status_code, renewed.content) == (200, b"v1")
    assert "AppConfig session token refused" in served.daemon.output
    fake.remove("app", "prod", unique)
    gone = until(lambda: served.get("app", "prod", unique), lambda r: r.status_code != 200)
    assert gone.status_code == 404
    assert gone.json()["ResourceType"] == "Configuration"
    assert metric(served.daemon, "cache_entries") == 0  # dropped, not served stale


def test_service_region_and_unsupported_variables(start_served: StartServed,
                                                  appconfig_aws: AppConfigAws,
                                                  unique: str) -> None:
    appconfig_aws.fake.deploy("app", "prod", unique, b"regional")
    served = start_served(AWS_APPCONFIG_EXTENSION_SERVICE_REGION="eu-west-1",
                          AWS_APPCONFIG_EXTENSION_ROLE_SESSION_NAME="xyzzy-session")
    since = time.monotonic()
    assert served.get("app", "prod", unique).content == b"regional"
    assert {call.region for call in list(appconfig_aws.proxy.calls)
            if call.at >= since} == {"eu-west-1"}  # signed for the region asked
    warned = [line for line in served.daemon.output.splitlines() if "ROLE_SESSION_NAME" in line]
    assert len(warned) == 1 and "WARN" in warned[0] and "not supported" in warned[0]
    assert "xyzzy-session" not in served.daemon.output  # the value itself is never logged
