"""The Secrets Manager Agent's configuration file, parsed: every key, both layouts, each refusal
naming the key, the value and what is allowed. (The daemon runs with such files in
test_agent.py.)"""

from __future__ import annotations

import pytest

from sidecar.config import settings as config
from sidecar.config.agent_file import AgentConfigError, parse
from sidecar.core.key import SECRETS, Key

ROLE = "arn:aws:iam::111122223333:role/reader"

FLAT = """
log_level = "DEBUG"
log_to_file = false
http_port = "2775"
ttl_seconds = "60"
cache_size = 500
ssrf_headers = ["X-Custom-Token", "X-Vault-Token"]
ssrf_env_variables = ["MY_TOKEN", "AWS_TOKEN"]
path_prefix = "/secrets/"
max_conn = "50"
max_roles = 3
region = "eu-west-1"
ignore_transient_errors = false
validate_credentials = false
credentials_file_path = "/run/creds"

[prefetch]
cache_buffer_ratio = 0.5
max_jitter_seconds = 2
secrets = [{ secret_id = "a" }, { secret_id = "b", role_arn = "ROLE" }]
filter_tags = [{ key = "Team" }]
""".replace("ROLE", ROLE)

NESTED = """
[logging]
log_level = "warn"
log_to_file = false

[capabilities.secrets_manager]
enabled = true
http_port = 2776
region = "us-west-2"
path_prefix = "/v2"
max_conn = 40
max_roles = 5
ignore_transient_errors = true
validate_credentials = true

[capabilities.secrets_manager.cache]
ttl_seconds = 120
cache_size = 200

[capabilities.secrets_manager.security]
ssrf_headers = ["X-Other"]
ssrf_env_variables = ["OTHER_TOKEN"]

[capabilities.secrets_manager.prefetch]
cache_buffer_ratio = 0.9
max_jitter_seconds = 0

[[capabilities.secrets_manager.prefetch.secrets]]
secret_id = "one"

[[capabilities.secrets_manager.prefetch.filter_tags]]
key = "Environment"
role_arn = "ROLE"
""".replace("ROLE", ROLE)


def test_flat_keys() -> None:
    values = parse(FLAT)
    assert values == {
        "validate_credentials": False, "log_level": "debug", "log_to_file": False, "port": 2775,
        "ttl_from_file": 60, "cache_items": 500,
        "token_headers": ("X-Custom-Token", "X-Vault-Token"),
        "token_variables": ("MY_TOKEN", "AWS_TOKEN"), "path_prefix": "/secrets/",
        "max_inbound_connections": 50, "max_roles": 3, "region": "eu-west-1",
        "ignore_transient_errors": False, "credentials_file": "/run/creds",
        "prefetch_buffer_ratio": 0.5, "prefetch_jitter_secs": 2,
        "prefetch": (Key(SECRETS, "a"), Key(SECRETS, "b", role=ROLE)),
        "prefetch_tags": (("Team", None),),
    }


def test_nested_keys() -> None:
    values = parse(NESTED)
    assert values == {
        "validate_credentials": True, "log_level": "warn", "log_to_file": False, "port": 2776,
        "region": "us-west-2", "path_prefix": "/v2/", "max_inbound_connections": 40,
        "max_roles": 5, "ignore_transient_errors": True, "ttl_from_file": 120,
        "cache_items": 200, "token_headers": ("X-Other",), "token_variables": ("OTHER_TOKEN",),
        "prefetch_buffer_ratio": 0.9, "prefetch_jitter_secs": 0,
        "prefetch": (Key(SECRETS, "one"),), "prefetch_tags": (("Environment", ROLE),),
    }


def test_an_empty_file_is_the_agents_defaults() -> None:
    assert parse("") == {"validate_credentials": True}


def test_the_environment_overrides_the_file(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "agent.toml"  # type: ignore[operator]
    path.write_text(FLAT)
    env = {"MY_TOKEN": "t", "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE": "7",
           "SSM_PARAMETER_STORE_TTL": "900", "AWS_REGION": "us-east-1"}
    settings, _ = config.load(env, str(path))
    assert settings.cache_items == 7  # the variable wins
    assert settings.ssm_ttl == 900 and settings.secrets_ttl == 60 and settings.s3_ttl == 60
    assert settings.region == "eu-west-1"  # the file's region wins over the SDK's variable
    assert settings.port == 2775
    assert settings.stale_if_error_secs == 0  # ignore_transient_errors = false
    assert settings.token == "t" and settings.token_source == "MY_TOKEN"
    assert settings.token_headers == ("X-Custom-Token", "X-Vault-Token")


def test_the_token_is_looked_for_only_in_the_listed_variables(tmp_path: pytest.TempPathFactory
                                                              ) -> None:
    path = tmp_path / "agent.toml"  # type: ignore[operator]
    path.write_text('ssrf_env_variables = ["MY_TOKEN"]\n')
    with pytest.raises(config.ConfigError, match="set one of MY_TOKEN"):
        config.load({"AWS_TOKEN": "not-looked-at"}, str(path))


@pytest.mark.parametrize(("text", "fragment"), [
    ('http_port = "abc"', "http_port = 'abc' is invalid: expected a whole number from 1 to 65535"),
    ("http_port = 70000", "http_port = 70000 is invalid: expected a whole number from 1 to 65535"),
    ("ttl_seconds = -1", "ttl_seconds = -1 is invalid: expected a whole number from 0 to 86400"),
    ('ttl_seconds = "1.5"', "ttl_seconds = '1.5' is invalid"),
    ("cache_size = 0", "cache_size = 0 is invalid: expected a whole number from 1 to 100000"),
    ("max_conn = 20000", "max_conn = 20000 is invalid: expected a whole number from 1 to 10000"),
    ("max_roles = 21", "max_roles = 21 is invalid: expected a whole number from 1 to 20"),
    ("max_conn = true", "max_conn = True is invalid"),
    ('log_level = "loud"', "log_level = 'loud' is invalid: expected DEBUG, INFO, WARN, ERROR"),
    ("ssrf_headers = []", "ssrf_headers = [] is invalid: expected a non-empty list of header"),
    ('ssrf_headers = ["bad header"]', "ssrf_headers = ['bad header'] is invalid"),
    ("ssrf_env_variables = []", "ssrf_env_variables = [] is invalid"),
    ('path_prefix = "v1"', "path_prefix = 'v1' is invalid: expected a path starting with /"),
    ('validate_credentials = "yes"', "validate_credentials = 'yes' is invalid: expected true"),
    ('colour = "blue"', "unknown key 'colour'"),
    ('region = "us east 1"', "region = 'us east 1' is invalid: expected an AWS region name"),
    ("[prefetch]\ncache_buffer_ratio = 2.0",
     "prefetch.cache_buffer_ratio = 2.0 is invalid: expected a number from 0.1 to 1.0"),
    ("[prefetch]\nmax_jitter_seconds = 11",
     "prefetch.max_jitter_seconds = 11 is invalid: expected a whole number from 0 to 10"),
    ('[[prefetch.secrets]]\nsecret_id = "a"\nrole_arn = "arn:aws:iam::1:role/x"',
     "prefetch.secrets[1].role_arn = 'arn:aws:iam::1:role/x' is invalid: expected a role ARN"),
    ("[[prefetch.filter_tags]]\nvalue = 'x'", "prefetch.filter_tags[1]: unknown key 'value'"),
    ('http_port = 2773\n[logging]\nlog_level = "info"', "'http_port': flat keys cannot be mixed"),
    ("[capabilities.secrets_manager]\nenabled = false", "enabled = false turns off"),
    ("[capabilities.acm]\nenabled = true", "certificate export is not supported"),
    ("[capabilities.secrets_manager.cache]\nttl = 3",
     "unknown key 'capabilities.secrets_manager.cache.ttl'"),
    ("[capabilities.secrets_manager]\nhttp_port = 0",
     "capabilities.secrets_manager.http_port = 0 is invalid"),
    ("http_port = ", "not valid TOML"),
])
def test_invalid_values_name_the_key_the_value_and_the_range(text: str, fragment: str) -> None:
    with pytest.raises(AgentConfigError) as raised:
        parse(text)
    assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)
