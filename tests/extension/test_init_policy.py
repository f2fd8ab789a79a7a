"""When Lambda mode ends INIT (the first ``event/next``), under the fake Extensions API.

A gate in front of (fake) AWS holds the prefetch: where the policy waits, INIT cannot end while
the gate holds (until the bound); where it does not, INIT ends anyway. Without a prefetch, the
fake API probes ``/ping`` at the first ``event/next``: only a daemon that was already serving
answers it at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import Aws, StartDaemon
from tests.support.lambda_api import FakeExtensionsApi
from tests.support.process import Daemon, free_port
from tests.support.proxy import FaultProxy, Rule

StartLambda = Callable[..., tuple[Daemon, FakeExtensionsApi]]
# Long enough that the bound never ends a wait these tests expect to see held.
LONG_BOUND = {"PARAMETERS_SECRETS_EXTENSION_PREFETCH_WAIT_MILLIS": "30000"}


@pytest.fixture
def start_lambda(start_daemon: StartDaemon) -> Iterator[StartLambda]:
    apis: list[FakeExtensionsApi] = []

    def start(**env: str) -> tuple[Daemon, FakeExtensionsApi]:
        port = free_port()
        api = FakeExtensionsApi(check_port=port).start()
        apis.append(api)
        return start_daemon(wait=False, port=str(port), AWS_LAMBDA_RUNTIME_API=api.address,
                            **env), api

    yield start
    for api in apis:
        api.stop()


@pytest.fixture
def gated(aws: Aws, proxy: FaultProxy, rules: list[Rule], unique: str) -> Iterator[Rule]:
    """A parameter ``/<unique>/p`` whose fetch AWS holds until released."""
    aws.ssm.put_parameter(Name=f"/{unique}/p", Type="String", Value="v")
    gate = proxy.add(Rule(match=unique, kind="gate"))
    rules.append(gate)
    yield gate
    proxy.release(gate)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def assert_init_waits_for_prefetch(daemon: Daemon, api: FakeExtensionsApi, proxy: FaultProxy,
                                   gate: Rule, unique: str) -> None:
    proxy.wait_held(gate, 1)  # the prefetch is out, and AWS holds it
    # An early event/next would have come right after register, long before the prefetch.
    assert api.first_next_at is None, "INIT ended before the prefetch landed"
    proxy.release(gate)
    assert api.init_ended.wait(15)
    assert daemon.param(f"/{unique}/p").headers["X-Cache"] == "hit"


def assert_init_ends_at_once(api: FakeExtensionsApi, proxy: FaultProxy, gate: Rule) -> None:
    assert api.init_ended.wait(15), "INIT never ended"
    assert not gate.opened.is_set()  # ... while AWS may still hold the prefetch
    wait_until(lambda: api.serving_at_first_next is not None, "the /ping probe never finished")
    assert api.serving_at_first_next is False


@pytest.mark.parametrize(("memory", "init_type", "waits"), [
    ("128", "on-demand", True),
    ("512", "on-demand", True),
    ("1768", "on-demand", True),
    ("1769", "on-demand", False),
    ("3008", "on-demand", False),
    ("10240", "provisioned-concurrency", True),
    ("10240", "snap-start", True),
    ("10240", "lambda-managed-instances", True),
    ("", "", False),  # not a real Lambda: no memory size
])
def test_which_sizes_and_initialization_types_wait(
        memory: str, init_type: str, waits: bool, start_lambda: StartLambda, proxy: FaultProxy,
        gated: Rule, unique: str) -> None:
    daemon, api = start_lambda(AWS_LAMBDA_FUNCTION_MEMORY_SIZE=memory,
                               AWS_LAMBDA_INITIALIZATION_TYPE=init_type,
                               PARAMETERS_SECRETS_EXTENSION_PREFETCH=f"ssm:/{unique}/p",
                               **LONG_BOUND)
    if waits:
        assert_init_waits_for_prefetch(daemon, api, proxy, gated, unique)
        assert "init_wait=prefetch" in daemon.output
    else:
        assert_init_ends_at_once(api, proxy, gated)
        daemon.wait_for_output("init_wait=no")


def test_without_prefetch_init_waits_until_the_daemon_serves(start_lambda: StartLambda,
                                                             aws: Aws, unique: str) -> None:
    aws.ssm.put_parameter(Name=f"/{unique}/p", Type="String", Value="v")
    daemon, api = start_lambda(AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
                               AWS_LAMBDA_INITIALIZATION_TYPE="on-demand", **LONG_BOUND)
    assert api.init_ended.wait(15)  # once serving, not at the bound
    wait_until(lambda: api.serving_at_first_next is not None, "the /ping probe never finished")
    assert api.serving_at_first_next is True  # it answered at once: it was serving already
    assert "init_wait=serving" in daemon.output
    assert daemon.param(f"/{unique}/p").status_code == 200


def test_the_bound_ends_init_while_prefetch_is_still_out(
        start_lambda: StartLambda, proxy: FaultProxy, gated: Rule, unique: str) -> None:
    daemon, api = start_lambda(AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
                               PARAMETERS_SECRETS_EXTENSION_PREFETCH=f"ssm:/{unique}/p",
                               PARAMETERS_SECRETS_EXTENSION_PREFETCH_WAIT_MILLIS="1500")
    proxy.wait_held(gated, 1)
    assert api.init_ended.wait(15), "the bound never ended INIT"
    assert api.first_next_at is not None
    assert api.first_next_at - api.registrations[0].at >= 1.5
    assert not gated.opened.is_set()  # AWS still holds the prefetch
    daemon.wait_for_output("INIT wait bound reached")
    proxy.release(gated)
    daemon.wait_for_output("prefetch done")  # it goes on after INIT
    assert daemon.param(f"/{unique}/p").headers["X-Cache"] == "hit"


@pytest.mark.parametrize(("mode", "memory", "waits"), [
    ("early", "128", False),
    ("wait", "3008", True),
    ("EARLY", "128", False),  # any case
])
def test_init_mode_overrides_the_choice(mode: str, memory: str, waits: bool,
                                        start_lambda: StartLambda, proxy: FaultProxy,
                                        gated: Rule, unique: str) -> None:
    daemon, api = start_lambda(AWS_LAMBDA_FUNCTION_MEMORY_SIZE=memory,
                               PARAMETERS_SECRETS_EXTENSION_INIT_MODE=mode,
                               PARAMETERS_SECRETS_EXTENSION_PREFETCH=f"ssm:/{unique}/p",
                               **LONG_BOUND)
    if waits:
        assert_init_waits_for_prefetch(daemon, api, proxy, gated, unique)
    else:
        assert_init_ends_at_once(api, proxy, gated)
    daemon.wait_for_output(f"init_reason=PARAMETERS_SECRETS_EXTENSION_INIT_MODE={mode.lower()}")


def test_prefetch_wait_false_waits_for_serving_only(start_lambda: StartLambda, proxy: FaultProxy,
                                                    gated: Rule, unique: str) -> None:
    daemon, api = start_lambda(AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
                               PARAMETERS_SECRETS_EXTENSION_PREFETCH=f"ssm:/{unique}/p",
                               PARAMETERS_SECRETS_EXTENSION_PREFETCH_WAIT="false", **LONG_BOUND)
    assert api.init_ended.wait(15)
    assert not gated.opened.is_set()
    wait_until(lambda: api.serving_at_first_next is not None, "the /ping probe never finished")
    assert api.serving_at_first_next is True
    assert "init_wait=serving" in daemon.output


@pytest.mark.parametrize(("env", "named"), [
    ({"PARAMETERS_SECRETS_EXTENSION_INIT_MODE": "later"},
     "PARAMETERS_SECRETS_EXTENSION_INIT_MODE='later' is invalid: expected one of auto, wait, "
     "early"),
    ({"PARAMETERS_SECRETS_EXTENSION_INIT_MODE": "early",
      "PARAMETERS_SECRETS_EXTENSION_PREFETCH_WAIT": "true"},
     "PARAMETERS_SECRETS_EXTENSION_PREFETCH_WAIT='true' contradicts "
     "PARAMETERS_SECRETS_EXTENSION_INIT_MODE='early'"),
])
def test_a_bad_init_mode_is_an_init_error(env: dict[str, str], named: str,
                                          start_lambda: StartLambda) -> None:
    daemon, api = start_lambda(**env)
    assert daemon.finish() == 2
    [report] = api.errors
    assert report.error_type_header == "Extension.ConfigInvalid"
    assert named in report.body["errorMessage"]
    assert named in daemon.output


def test_the_bound_ends_init_even_before_the_daemon_serves(start_lambda: StartLambda) -> None:
    daemon, api = start_lambda(AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
                               PARAMETERS_SECRETS_EXTENSION_PREFETCH_WAIT_MILLIS="1")
    assert api.init_ended.wait(15)
    daemon.wait_for_output("INIT wait bound reached before the daemon served")
    daemon.wait_ready()  # and it serves all the same
