"""Every configuration variable: default, a valid value, an invalid value with one clear line."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sidecar.config import settings as config
from tests.conftest import Aws, StartDaemon
from tests.support.proxy import FaultProxy, Rule

BASE = {"AWS_TOKEN": "t"}


def load(**env: str) -> config.Settings:
    return config.load({**BASE, **env})[0]


def test_defaults_match_the_aws_extension() -> None:
    settings = load()
    assert settings.port == 2773
    assert settings.cache_enabled is True
    assert settings.cache_items == 1000
    assert settings.cache_bytes == 64 * 1024 * 1024  # not the extension's 1000 MB: review S3-6
    assert settings.max_connections == 3
    assert settings.log_level == "info"
    assert settings.log_format == "text"
    assert settings.ssm_ttl == settings.secrets_ttl == 300
    assert settings.ssm_timeout_ms == settings.secrets_timeout_ms == 0
    assert settings.refresh_ahead == 0.8
    assert settings.stale_if_error_secs == config.DEFAULT_STALE_IF_ERROR_SECS
    assert settings.prefetch == ()


@pytest.mark.parametrize(("variable", "value", "field", "expected"), [
    ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "8080", "port", 8080),
    ("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED", "False", "cache_enabled", False),
    ("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED", "TRUE", "cache_enabled", True),
    ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "100000", "cache_items", 100000),
    ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "0", "cache_items", 0),
    ("PARAMETERS_SECRETS_EXTENSION_MAX_CACHE_SIZE", "16", "cache_bytes", 16 * 1024 * 1024),
    ("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", "10", "max_connections", 10),
    ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "DEBUG", "log_level", "debug"),
    ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "Warn", "log_level", "warn"),
    ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "none", "log_level", "none"),
    ("AWS_LAMBDA_LOG_LEVEL", "DEBUG", "log_level", "debug"),
    ("AWS_LAMBDA_LOG_FORMAT", "JSON", "log_format", "json"),
    ("SSM_PARAMETER_STORE_TTL", "0", "ssm_ttl", 0),
    ("SSM_PARAMETER_STORE_TTL", "3600", "ssm_ttl", 3600),
    ("SECRETS_MANAGER_TTL", "86400", "secrets_ttl", 86400),
    ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "250", "ssm_timeout_ms", 250),
    ("SECRETS_MANAGER_TIMEOUT_MILLIS", "1000", "secrets_timeout_ms", 1000),
    ("PARAMETERS_SECRETS_EXTENSION_REFRESH_AHEAD", "0.5", "refresh_ahead", 0.5),
    ("PARAMETERS_SECRETS_EXTENSION_STALE_IF_ERROR_SECS", "0", "stale_if_error_secs", 0),
    ("PARAMETERS_SECRETS_EXTENSION_COALESCE", "false", "coalesce", False),
    ("AWS_REGION", "eu-west-1", "region", "eu-west-1"),
])
def test_valid_values(variable: str, value: str, field: str, expected: object) -> None:
    assert getattr(load(**{variable: value}), field) == expected


def test_shared_ttl_fills_both_unless_one_is_set() -> None:
    both = load(PARAMETERS_SECRETS_EXTENSION_TTL_SECS="60")
    assert (both.ssm_ttl, both.secrets_ttl) == (60, 60)
    one = load(PARAMETERS_SECRETS_EXTENSION_TTL_SECS="60", SECRETS_MANAGER_TTL="5")
    assert (one.ssm_ttl, one.secrets_ttl) == (60, 5)


def test_our_log_level_wins_over_lambdas() -> None:
    assert load(AWS_LAMBDA_LOG_LEVEL="DEBUG",
                PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL="error").log_level == "error"


def test_large_ttl_is_clamped_with_a_warning() -> None:
    settings, warnings = config.load({**BASE, "SSM_PARAMETER_STORE_TTL": "100000"})
    assert settings.ssm_ttl == 86400
    assert len(warnings) == 1
    assert "SSM_PARAMETER_STORE_TTL" in warnings[0]
    assert "86400" in warnings[0]


@pytest.mark.parametrize(("variable", "value", "allowed"), [
    ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "0", "1 to 65535"),
    ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "65536", "1 to 65535"),
    ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "http", "1 to 65535"),
    ("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED", "yes", "true or false"),
    ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "-1", "0 to 100000"),
    ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "100001", "0 to 100000"),
    ("PARAMETERS_SECRETS_EXTENSION_MAX_CACHE_SIZE", "0", "1 to 1048576"),
    ("PARAMETERS_SECRETS_EXTENSION_MAX_CACHE_SIZE", "1.5", "1 to 1048576"),
    ("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", "0", "1 to 1000"),
    ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "verbose", "debug, info, warn, error, none"),
    ("AWS_LAMBDA_LOG_FORMAT", "xml", "text, json"),
    ("SSM_PARAMETER_STORE_TTL", "-5", "0 to 86400"),
    ("SECRETS_MANAGER_TTL", "five", "0 to 86400"),
    ("PARAMETERS_SECRETS_EXTENSION_TTL_SECS", "-1", "0 to 86400"),
    ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "-1", "0 to 600000"),
    ("SECRETS_MANAGER_TIMEOUT_MILLIS", "1e3", "0 to 600000"),
    ("PARAMETERS_SECRETS_EXTENSION_REFRESH_AHEAD", "1.5", "0 to 1"),
    ("PARAMETERS_SECRETS_EXTENSION_STALE_IF_ERROR_SECS", "-1", "0 to 604800"),
    ("PARAMETERS_SECRETS_EXTENSION_PREFETCH", "sns:topic", "ssm:"),
    ("PARAMETERS_SECRETS_EXTENSION_COALESCE", "no", "true or false"),
])
def test_invalid_values_name_variable_value_and_range(variable: str, value: str,
                                                      allowed: str) -> None:
    with pytest.raises(config.ConfigError) as raised:
        load(**{variable: value})
    message = str(raised.value)
    assert variable in message
    assert value in message
    assert allowed in message
    assert "\n" not in message


def test_token_comes_from_the_first_set_variable(tmp_path: Path) -> None:
    env = {"AWS_SESSION_TOKEN": "session", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container"}
    assert config.read_token(env) == ("session", "AWS_SESSION_TOKEN")
    assert config.read_token({**env, "AWS_TOKEN": "mine"})[0] == "mine"
    assert config.read_token({"AWS_CONTAINER_AUTHORIZATION_TOKEN": "c"})[0] == "c"
    token_file = tmp_path / "token"
    token_file.write_text("  from-file\n")
    assert config.read_token({"AWS_TOKEN": f"file://{token_file}"})[0] == "from-file"


def test_unreadable_token_file_and_no_token_are_errors(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="AWS_TOKEN"):
        config.read_token({"AWS_TOKEN": f"file://{tmp_path}/absent"})
    with pytest.raises(config.ConfigError) as raised:
        config.read_token({})
    for name in config.TOKEN_VARIABLES:
        assert name in str(raised.value)


def test_the_token_is_never_in_the_description() -> None:
    settings = load(AWS_TOKEN="very-secret-token-value")
    assert "very-secret-token-value" not in json.dumps(settings.describe())
    assert "very-secret-token-value" not in repr(settings)


# -- the same rules seen from the running process --------------------------------------------

@pytest.mark.parametrize(("variable", "value"), [
    ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "99999"),
    ("SSM_PARAMETER_STORE_TTL", "-1"),
    ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "loud"),
])
def test_bad_config_exits_non_zero_with_one_line(start_daemon: StartDaemon, variable: str,
                                                 value: str) -> None:
    daemon = start_daemon(wait=False, **{variable: value})
    assert daemon.finish() != 0
    lines = daemon.output.strip().splitlines()
    assert len(lines) == 1, lines
    assert variable in lines[0]
    assert value in lines[0]
    assert "expected" in lines[0]


def test_bad_config_line_is_json_when_lambda_logs_are(start_daemon: StartDaemon) -> None:
    """N14: with AWS_LAMBDA_LOG_FORMAT=JSON the start-up error is the logger's JSON object."""
    daemon = start_daemon(wait=False, AWS_LAMBDA_LOG_FORMAT="json",
                          SSM_PARAMETER_STORE_TTL="-1")
    assert daemon.finish() != 0
    lines = daemon.output.strip().splitlines()
    assert len(lines) == 1, lines
    line = json.loads(lines[0])
    assert (line["level"], line["logger"]) == ("ERROR", "parameters-secrets-sidecar")
    assert "SSM_PARAMETER_STORE_TTL='-1'" in line["message"]


def test_no_token_refuses_to_start(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(wait=False, AWS_TOKEN="")
    assert daemon.finish() != 0
    assert "AWS_TOKEN" in daemon.output
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN" in daemon.output


def test_info_prints_the_effective_config_and_clamp_warning(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(SECRETS_MANAGER_TTL="90000", PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE="7")
    daemon.terminate()
    output = daemon.output
    assert "[parameters-secrets-sidecar] WARN SECRETS_MANAGER_TTL=90000" in output
    assert "[parameters-secrets-sidecar] INFO starting" in output
    assert "cache_items=7" in output
    assert "secrets_ttl_secs=86400" in output


def test_json_log_format(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(AWS_LAMBDA_LOG_FORMAT="JSON")
    daemon.terminate()
    lines = [json.loads(line) for line in daemon.output.strip().splitlines()]
    assert lines
    assert {line["level"] for line in lines} <= {"DEBUG", "INFO", "WARN", "ERROR"}
    assert any(line["message"] == "starting" and line["port"] == daemon.port for line in lines)


@pytest.mark.parametrize("setting", [{"PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "debug"},
                                     {"AWS_LAMBDA_LOG_LEVEL": "DEBUG"}])
def test_debug_logs_every_request(start_daemon: StartDaemon, unique: str,
                                  setting: dict[str, str]) -> None:
    daemon = start_daemon(**setting)
    daemon.param(f"/{unique}/p")
    daemon.terminate()
    assert f"name=/{unique}/p" in daemon.output
    assert "DEBUG upstream call api=get_parameter" in daemon.output


def test_info_does_not_log_requests(start_daemon: StartDaemon, unique: str) -> None:
    daemon = start_daemon()
    daemon.param(f"/{unique}/p")
    daemon.terminate()
    assert unique not in daemon.output


def test_log_level_none_prints_nothing(start_daemon: StartDaemon, unique: str) -> None:
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL="none")
    daemon.param(f"/{unique}/p")
    assert daemon.terminate() == 0
    assert daemon.output == ""


def test_max_connections_caps_concurrent_upstream_calls(start_daemon: StartDaemon, aws: Aws,
                                                        proxy: FaultProxy, unique: str) -> None:
    names = [f"/{unique}/p{index}" for index in range(6)]
    for name in names:
        aws.ssm.put_parameter(Name=name, Type="String", Value="v")
    gate = proxy.add(Rule(match=unique, kind="gate"))
    try:
        daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS="2")
        with ThreadPoolExecutor(6) as pool:
            def status(name: str) -> int:
                return daemon.param(name).status_code

            reads = [pool.submit(status, name) for name in names]
            proxy.wait_held(gate, 2)  # AWS holds two calls: both slots are taken
            # Six readers are waiting; the cap must keep the other four queued in the daemon.
            held_deadline = time.monotonic() + 1.0
            while time.monotonic() < held_deadline:
                assert proxy.active(unique) <= 2
                time.sleep(0.02)
            proxy.release(gate)
            statuses = [read.result(timeout=30) for read in reads]
    finally:
        proxy.remove(gate)
    assert statuses == [200] * 6
    assert proxy.peak_concurrency(unique) == 2


def test_port_in_use_is_one_clear_line(start_daemon: StartDaemon) -> None:
    first = start_daemon()
    second = start_daemon(wait=False, port=str(first.port))
    assert second.finish() != 0
    assert "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT" in second.output
    assert len(second.output.strip().splitlines()) == 2  # the start-up INFO line, then this
