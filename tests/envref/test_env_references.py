"""CloudFormation's dynamic references, parsed (sidecar/envref/references.py), and the pure
helpers of the wrapper and ``exec``: options, endpoints, intervals, signals, mounts."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.envref import options as envopts
from sidecar.envref.client import Endpoint, parse_endpoint
from sidecar.envref.command import default_interval, signal_number
from sidecar.envref.references import (
    MalformedReference,
    Reference,
    has_reference,
    references,
    render,
    scan,
    shown,
)
from sidecar.envref.templates import Template, file_system, parse, parse_mode

SSM_ARN = "arn:aws:ssm:us-east-1:123456789012:parameter/app/db/host"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf"
PARTIAL_ARN = "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:prod/db"


def one(text: str) -> Reference:
    [piece] = scan(text)
    assert isinstance(piece, Reference)
    assert piece.text == text
    return piece


@pytest.mark.parametrize(("text", "service", "name", "version"), [
    ("{{resolve:ssm:/app/db/host}}", "ssm", "/app/db/host", None),
    ("{{resolve:ssm:/app/db/host:3}}", "ssm", "/app/db/host", "3"),
    ("{{resolve:ssm:app-flag}}", "ssm", "app-flag", None),
    ("{{resolve:ssm:/app/db/host:}}", "ssm", "/app/db/host", None),  # empty: the default
    ("{{resolve:ssm-secure:/app/db/password}}", "ssm-secure", "/app/db/password", None),
    ("{{resolve:ssm-secure:/app/db/password:12}}", "ssm-secure", "/app/db/password", "12"),
    (f"{{{{resolve:ssm:{SSM_ARN}}}}}", "ssm", SSM_ARN, None),
    (f"{{{{resolve:ssm-secure:{SSM_ARN}:7}}}}", "ssm-secure", SSM_ARN, "7"),
    ("{{resolve:ssm:/aws/reference/secretsmanager/prod/db}}", "ssm",
     "/aws/reference/secretsmanager/prod/db", None),
])
def test_parameter_forms(text: str, service: str, name: str, version: str | None) -> None:
    ref = one(text)
    assert (ref.service, ref.name, ref.version) == (service, name, version)
    assert ref.json_key is ref.version_stage is ref.version_id is None


@pytest.mark.parametrize(("text", "name", "json_key", "stage", "version_id"), [
    ("{{resolve:secretsmanager:prod/db}}", "prod/db", None, None, None),
    ("{{resolve:secretsmanager:prod/db:SecretString}}", "prod/db", None, None, None),
    ("{{resolve:secretsmanager:prod/db:SecretString:password}}", "prod/db", "password", None,
     None),
    ("{{resolve:secretsmanager:prod/db::password}}", "prod/db", "password", None, None),
    ("{{resolve:secretsmanager:prod/db::::}}", "prod/db", None, None, None),
    ("{{resolve:secretsmanager:prod/db:SecretString:password:AWSPREVIOUS}}", "prod/db",
     "password", "AWSPREVIOUS", None),
    ("{{resolve:secretsmanager:prod/db:SecretString::AWSPENDING}}", "prod/db", None,
     "AWSPENDING", None),
    ("{{resolve:secretsmanager:prod/db:SecretString:password::EXAMPLE1-90ab-cdef}}", "prod/db",
     "password", None, "EXAMPLE1-90ab-cdef"),
    ("{{resolve:secretsmanager:prod/db::::EXAMPLE1-90ab-cdef}}", "prod/db", None, None,
     "EXAMPLE1-90ab-cdef"),
    ("{{resolve:secretsmanager:prod/db:SecretString:db.host}}", "prod/db", "db.host", None,
     None),
    (f"{{{{resolve:secretsmanager:{SECRET_ARN}}}}}", SECRET_ARN, None, None, None),
    (f"{{{{resolve:secretsmanager:{SECRET_ARN}:SecretString:password:AWSCURRENT}}}}",
     SECRET_ARN, "password", "AWSCURRENT", None),
    (f"{{{{resolve:secretsmanager:{PARTIAL_ARN}::username}}}}", PARTIAL_ARN, "username", None,
     None),
    ("{{resolve:secretsmanager:a+b=c.d@e-f_g}}", "a+b=c.d@e-f_g", None, None, None),
])
def test_secret_forms(text: str, name: str, json_key: str | None, stage: str | None,
                      version_id: str | None) -> None:
    ref = one(text)
    assert ref.service == "secretsmanager"
    assert (ref.name, ref.json_key, ref.version_stage, ref.version_id) == \
        (name, json_key, stage, version_id)
    assert ref.version is None


def test_spaces_inside_the_braces_are_a_reference() -> None:
    """CloudFormation leaves ``{{ resolve:... }}`` alone at deploy (cfn-lint W1053)."""
    ref = one("{{ resolve:ssm:/app/db/host }}")
    assert (ref.service, ref.name) == ("ssm", "/app/db/host")
    ref = one("{{\tresolve:secretsmanager:prod/db::password\t}}")
    assert (ref.name, ref.json_key) == ("prod/db", "password")


def test_text_around_and_between_references() -> None:
    pieces = scan("postgres://app:{{resolve:secretsmanager:prod/db::password}}@"
                  "{{resolve:ssm:/app/db/host}}:5432/{{resolve:ssm:/app/db/name}}")
    assert [p if isinstance(p, str) else p.name for p in pieces] == \
        ["postgres://app:", "prod/db", "@", "/app/db/host", ":5432/", "/app/db/name"]
    values = {ref: {"prod/db": "pw", "/app/db/host": "h", "/app/db/name": "n"}[ref.name]
              for ref in references(pieces)}
    assert render(pieces, values) == "postgres://app:pw@h:5432/n"


def test_adjacent_and_repeated_references() -> None:
    pieces = scan("{{resolve:ssm:/a}}{{resolve:ssm:/a}}-{{resolve:ssm:/b}}")
    refs = references(pieces)
    assert [r.name for r in refs] == ["/a", "/a", "/b"]
    assert refs[0].what == refs[1].what
    assert render(pieces, {r: r.name.upper() for r in refs}) == "/A/A-/B"


@pytest.mark.parametrize("text", [
    "", "plain", "{{name}}", "{{ name }}", "Hello {{user}}, {{resolve}}", "resolve:ssm:/a",
    "{resolve:ssm:/a}", "{ {resolve:ssm:/a}}", "${resolve:ssm:/a}", "}}{{",
])
def test_text_without_a_reference_is_untouched(text: str) -> None:
    assert not has_reference(text)
    pieces = scan(text)
    assert pieces == ([text] if text else [])
    assert render(pieces, {}) == text


@pytest.mark.parametrize(("text", "problem"), [
    ("{{resolve:s3:bucket/key}}", "names the service 's3'"),
    ("{{resolve:ssm}}", "has no NAME"),
    ("{{resolve:ssm:}}", "has no NAME"),
    ("{{resolve:secretsmanager:}}", "has no ID"),
    ("{{resolve:ssm:/a/b", "has no closing '}}'"),
    ("{{resolve:ssm:/a/b:latest}}", "not a number"),
    ("{{resolve:ssm:/a/b:-1}}", "not a number"),
    ("{{resolve:ssm:/a/b:1:2}}", "a field too many"),
    ("{{resolve:secretsmanager:s:SecretBinary}}", "only 'SecretString'"),
    ("{{resolve:secretsmanager:s:SecretString:k:AWSCURRENT:v1}}", "give one"),
    ("{{resolve:secretsmanager:s:SecretString:k:st:id:extra}}", "a field too many"),
    ("{{resolve:secretsmanager:arn:aws:secretsmanager:us-east-1:1:parameter/x}}",
     "arn:PARTITION:secretsmanager"),
    ("{{resolve:secretsmanager:arn:aws:secretsmanager:us-east-1:1:secret:}}",
     "arn:PARTITION:secretsmanager"),
    ("{{resolve:ssm:arn:aws:ssm:us-east-1:1:document/x}}", "arn:PARTITION:ssm"),
    ("{{resolve:ssm:arn:aws:ssm:us-east-1}}", "arn:PARTITION:ssm"),
    ("{{resolve:ssm-secure:arn:aws:secretsmanager:us-east-1:1:parameter/x}}", "arn:PARTITION:ssm"),
])
def test_malformed_references_are_errors(text: str, problem: str) -> None:
    assert has_reference(text)
    with pytest.raises(MalformedReference) as caught:
        scan(f"before {text} after")
    assert problem in str(caught.value)
    assert caught.value.text.startswith("{{")


def test_a_malformed_reference_among_good_ones_fails_the_text() -> None:
    with pytest.raises(MalformedReference) as caught:
        scan("{{resolve:ssm:/a}} and {{resolve:nope:x}}")
    assert caught.value.text == "{{resolve:nope:x}}"


def test_shown_is_one_printable_line_of_bounded_length() -> None:
    assert shown("a\nb\x1b") == "a\\x0ab\\x1b"
    long = shown("x" * 1000)
    assert len(long) < 320 and long.endswith("...")


literal = st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=12)
reference_text = st.sampled_from([
    "{{resolve:ssm:/a}}", "{{ resolve:ssm-secure:/b:2 }}", "{{resolve:secretsmanager:s::k}}",
    f"{{{{resolve:secretsmanager:{SECRET_ARN}::::v}}}}",
])


@given(st.lists(st.tuples(literal, reference_text), max_size=5), literal)
def test_scan_then_render_with_the_references_themselves_is_the_text(
        parts: list[tuple[str, str]], tail: str) -> None:
    text = "".join(a + b for a, b in parts) + tail
    pieces = scan(text)
    assert render(pieces, {ref: ref.text for ref in references(pieces)}) == text
    assert len(references(pieces)) == len(parts)
    assert all(piece for piece in pieces if isinstance(piece, str))


# -- options, endpoints, intervals, signals, templates' checks --------------------------------

@pytest.mark.parametrize(("text", "endpoint"), [
    ("http://127.0.0.1:2773", Endpoint("127.0.0.1", 2773)),
    ("http://[::1]:2800/", Endpoint("::1", 2800)),
    ("http://localhost:9", Endpoint("localhost", 9)),
    ("unix:///run/sidecar/sidecar.sock", Endpoint(path="/run/sidecar/sidecar.sock")),
])
def test_endpoints(text: str, endpoint: Endpoint) -> None:
    assert parse_endpoint(text) == endpoint
    assert parse_endpoint(str(endpoint)) == endpoint


@pytest.mark.parametrize("text", ["127.0.0.1:2773", "http://127.0.0.1", "http://h:0",
                                  "http://h:99999", "https://h:1", "unix://relative",
                                  "http://h:1/path", "unix:///s?x=1", "tcp://h:1"])
def test_bad_endpoints_name_the_forms(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        envopts.load({envopts.ENDPOINT: text})
    assert envopts.ENDPOINT in str(caught.value)
    assert "unix:///path/to/socket" in str(caught.value)


def test_options_defaults_and_validation() -> None:
    chosen = envopts.load({"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": "2800"})
    assert chosen == envopts.Options("fail", 8000, Endpoint("127.0.0.1", 2800))
    assert envopts.load({envopts.ON_ERROR: " UNSET "}).on_error == "unset"
    assert envopts.load({envopts.TIMEOUT: "250"}).timeout_ms == 250
    for variable, value in ((envopts.ON_ERROR, "ignore"), (envopts.TIMEOUT, "0"),
                            (envopts.TIMEOUT, "600001"), (envopts.TIMEOUT, "1s")):
        with pytest.raises(ValueError) as caught:
            envopts.load({variable: value})
        assert f"{variable}={value!r}" in str(caught.value)


def test_default_interval_is_the_cache_ttl() -> None:
    assert default_interval({}) == 300
    assert default_interval({"SSM_PARAMETER_STORE_TTL": "60", "SECRETS_MANAGER_TTL": "900"}) == 60
    assert default_interval({"PARAMETERS_SECRETS_EXTENSION_TTL_SECS": "30"}) == 30
    assert default_interval({"SSM_PARAMETER_STORE_TTL": "0", "SECRETS_MANAGER_TTL": "0"}) == 300
    assert default_interval({"SECRETS_MANAGER_TTL": "999999"}) == 300  # SSM's default wins


def test_signal_names() -> None:
    assert signal_number("HUP", "--signal") == signal.SIGHUP
    assert signal_number("sigusr1", "--signal") == signal.SIGUSR1
    assert signal_number("15", "--signal") == signal.SIGTERM
    with pytest.raises(ValueError, match="--signal 'NOPE'"):
        signal_number("NOPE", "--signal")


def test_template_specs_and_modes() -> None:
    assert parse("a.tpl:/dev/shm/a.conf") == Template("a.tpl", "/dev/shm/a.conf")
    assert parse_mode("0640") == 0o640 and parse_mode("0o600") == 0o600
    for bad in ("a.tpl", ":/dev/shm/x", "a.tpl:", "a.tpl:/dev/shm/"):
        with pytest.raises(ValueError, match="expected SRC:DEST"):
            parse(bad)
    for bad in ("999", "0o1000", "rw", ""):
        with pytest.raises(ValueError, match="octal file mode"):
            parse_mode(bad)


def test_file_system_takes_the_deepest_and_last_mount(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda / ext4 rw 0 0\n"
                      "tmpfs /dev/shm tmpfs rw 0 0\n"
                      "tmpfs /srv/my\\040dir tmpfs rw 0 0\n"
                      "/dev/vdb /srv ext4 rw 0 0\n"
                      "/dev/vdc /dev/shm ext4 rw 0 0\n")
    assert file_system("/dev/shm", str(mounts)) == "ext4"  # mounted over later
    assert file_system("/srv/my dir", str(mounts)) == "tmpfs"
    assert file_system("/srv/my", str(mounts)) == "ext4"
    assert file_system("/etc", str(mounts)) == "ext4"
