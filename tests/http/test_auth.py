"""Authentication and request hygiene (SPEC section 3), against the running daemon."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import Aws, StartDaemon
from tests.support.process import Daemon


@pytest.fixture
def name(aws: Aws, unique: str) -> str:
    parameter = f"/{unique}/p"
    aws.ssm.put_parameter(Name=parameter, Type="String", Value="v")
    return parameter


def test_missing_or_wrong_token_is_403(shared_daemon: Daemon, name: str) -> None:
    for token in (None, "wrong", shared_daemon.token + "x", shared_daemon.token[:-1], ""):
        response = shared_daemon.get("/systemsmanager/parameters/get", token=token,
                                     params={"name": name})
        assert response.status_code == 403
        assert response.json()["__type"] == "BadToken"
        assert shared_daemon.token not in response.text


def test_header_name_is_case_insensitive_and_vault_header_works(shared_daemon: Daemon,
                                                                name: str) -> None:
    path = f"/systemsmanager/parameters/get?name={name}"
    lower = shared_daemon.raw(path, token=None,
                              headers={"x-aws-parameters-secrets-token": shared_daemon.token})
    vault = shared_daemon.raw(path, token=None, headers={"X-Vault-Token": shared_daemon.token})
    assert lower.status_code == 200
    assert vault.status_code == 200
    wrong_vault = shared_daemon.raw(path, token=None, headers={"X-Vault-Token": "nope"})
    assert wrong_vault.status_code == 403


@pytest.mark.parametrize("variable", ["AWS_TOKEN", "AWS_SESSION_TOKEN",
                                      "AWS_CONTAINER_AUTHORIZATION_TOKEN"])
def test_token_from_each_variable(start_daemon: StartDaemon, name: str, variable: str) -> None:
    daemon = start_daemon(**{"AWS_TOKEN": "", variable: f"token-from-{variable}"})
    assert daemon.get("/systemsmanager/parameters/get", token=f"token-from-{variable}",
                      params={"name": name}).status_code == 200
    assert daemon.get("/systemsmanager/parameters/get", token="other",
                      params={"name": name}).status_code == 403


def test_first_set_variable_wins(start_daemon: StartDaemon, name: str) -> None:
    daemon = start_daemon(AWS_TOKEN="", AWS_SESSION_TOKEN="session",
                          AWS_CONTAINER_AUTHORIZATION_TOKEN="container")
    assert daemon.get("/systemsmanager/parameters/get", token="session",
                      params={"name": name}).status_code == 200
    assert daemon.get("/systemsmanager/parameters/get", token="container",
                      params={"name": name}).status_code == 403


def test_token_from_a_file(start_daemon: StartDaemon, tmp_path: Path, name: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    daemon = start_daemon(AWS_TOKEN="", AWS_CONTAINER_AUTHORIZATION_TOKEN=f"file://{token_file}")
    assert daemon.get("/systemsmanager/parameters/get", token="file-token",
                      params={"name": name}).status_code == 200


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on ``port``, from /proc (hex, as the kernel has it)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":
                found.add(address)
    return found


def test_listens_on_loopback_only(shared_daemon: Daemon) -> None:
    """127.0.0.1, and ::1 where the host has IPv6 loopback; never a wildcard (SPEC section 1)."""
    loopback = {"0100007F"}  # 127.0.0.1 as /proc/net/tcp writes it
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        loopback.add("00000000000000000000000001000000")  # ::1 in /proc/net/tcp6
    except OSError:
        pass  # no IPv6 loopback here: 127.0.0.1 alone
    assert _listening_addresses(shared_daemon.port) == loopback
