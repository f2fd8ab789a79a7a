"""Where the daemon listens (README, "Where it listens"; SPEC section 1), over real sockets:
``[::1]`` beside 127.0.0.1, the Unix domain socket (client, curl, file permissions, stale and
hostile paths, cleanup), and the guarded extra address with its allow-list."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Aws, StartDaemon, daemon_env
from tests.support.lambda_api import FakeExtensionsApi
from tests.support.process import REPO, TOKEN_HEADER, Daemon, Process, free_port
from tests.support.proxy import FaultProxy

SOCKET = "PARAMETERS_SECRETS_EXTENSION_UNIX_SOCKET"
BIND = "PARAMETERS_SECRETS_EXTENSION_BIND_ADDRESS"
ALLOWED = "PARAMETERS_SECRETS_EXTENSION_ALLOWED_CLIENTS"


def no_ipv6_loopback() -> str:
    """Why this machine cannot test ``[::1]``, or "" when it can."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        return f"no IPv6 loopback on this machine ({exc.strerror})"
    return ""


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A directory other users may enter (pytest's own tmp root is 0700) but not write to."""
    path = Path(tempfile.mkdtemp(prefix="sidecar-listen-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def unix_get(path: Path, target: str, token: str | None) -> tuple[int, bytes]:
    from sidecar_client._transport import UnixConnection

    conn = UnixConnection(str(path), timeout=10)
    try:
        conn.request("GET", target, headers={TOKEN_HEADER: token} if token else {})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def get_from(source: str, host: str, port: int, target: str,
             headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """A GET whose connection leaves from ``source`` (another "host" on the loopback range)."""
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", target, headers=headers)
        answer = conn.getresponse()
        body = answer.read()
        is_json = answer.getheader("Content-Type", "").startswith("application/json")
        return answer.status, json.loads(body) if is_json else {}
    finally:
        conn.close()


def refused_at_start(daemon: Daemon, *needles: str) -> None:
    """Non-zero exit and one ERROR line naming what was wrong."""
    assert daemon.finish() != 0
    errors = [line for line in daemon.output.splitlines() if "ERROR" in line]
    assert len(errors) == 1, daemon.output
    for needle in needles:
        assert needle in errors[0], errors[0]


# -- loopback, both families -----------------------------------------------------------------

def test_reads_over_ipv6_loopback_share_the_cache(start_daemon: StartDaemon, aws: Aws,
                                                  unique: str) -> None:
    reason = no_ipv6_loopback()
    if reason:
        pytest.skip(reason)
    name = f"/{unique}/v6"
    aws.ssm.put_parameter(Name=name, Type="String", Value="over six")
    daemon = start_daemon()
    assert daemon.param(name).headers["X-Cache"] == "miss"  # over 127.0.0.1
    conn = http.client.HTTPConnection("::1", daemon.port, timeout=10)
    conn.request("GET", f"/systemsmanager/parameters/get?name={name}",
                 headers={TOKEN_HEADER: daemon.token})
    answer = conn.getresponse()
    assert answer.status == 200
    assert json.loads(answer.read())["Parameter"]["Value"] == "over six"
    assert answer.getheader("X-Cache") == "hit"  # one server, one cache
    conn.request("GET", f"/systemsmanager/parameters/get?name={name}")
    forbidden = conn.getresponse()
    assert forbidden.status == 403 and json.loads(forbidden.read())["__type"] == "BadToken"
    conn.close()
    assert f"address=127.0.0.1:{daemon.port},[::1]:{daemon.port}" in daemon.output


def test_without_ipv6_loopback_it_starts_and_says_so_at_debug(home: Path, proxy: FaultProxy,
                                                               token: str) -> None:
    """In a network namespace whose loopback has no ::1, as on a host with IPv6 turned off."""
    if not (shutil.which("unshare") and shutil.which("nsenter") and shutil.which("ip")):
        pytest.skip("needs unshare, nsenter and ip (util-linux, iproute2)")
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here (unshare -n needs root)")
    port = free_port()
    env = daemon_env(home, proxy, token, port, {"PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "debug"})
    setup = ("ip link set lo up && echo 1 > /proc/sys/net/ipv6/conf/lo/disable_ipv6 && "
             f"exec {sys.executable} -m sidecar")
    daemon = Process(["unshare", "-n", "sh", "-c", setup], env)  # unshare and sh exec: one pid
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["nsenter", "-t", str(daemon.proc.pid), "-n", sys.executable, "-m",
                              "sidecar", "--healthcheck"], env=env, cwd=REPO,
                             capture_output=True, timeout=30).returncode != 0:
            assert daemon.proc.poll() is None, daemon.output
            assert time.monotonic() < deadline, daemon.output
            time.sleep(0.05)
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    notes = [line for line in daemon.output.splitlines() if "no IPv6 loopback" in line]
    assert len(notes) == 1 and "DEBUG" in notes[0], daemon.output
    assert f"ready address=127.0.0.1:{port} mode=standalone" in daemon.output


# -- the Unix domain socket ------------------------------------------------------------------

def test_unix_socket_serves_the_client_and_healthcheck_and_goes_at_exit(
        start_daemon: StartDaemon, aws: Aws, unique: str, sock_dir: Path) -> None:
    name = f"/{unique}/unix"
    aws.ssm.put_parameter(Name=name, Type="String", Value="over a socket file")
    path = sock_dir / "sidecar.sock"
    daemon = start_daemon(**{SOCKET: str(path)})
    found = path.lstat()
    assert stat.S_ISSOCK(found.st_mode) and stat.S_IMODE(found.st_mode) == 0o660
    from sidecar_client._transport import Transport

    client = Transport(endpoint=f"unix://{path}", token=daemon.token)
    answer = client.read("/systemsmanager/parameters/get", [("name", name)])
    assert answer.json()["Parameter"]["Value"] == "over a socket file"
    assert answer.headers["x-cache"] == "miss"
    # The client's variable, in a process of its own, with the TCP port pointing nowhere.
    read = subprocess.run(
        [sys.executable, "-c",
         f"import sidecar_client; print(sidecar_client.get_parameter({name!r}))"],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO / "client"),
             "AWS_TOKEN": daemon.token, "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(free_port()),
             "PARAMETERS_SECRETS_SIDECAR_ENDPOINT": f"unix://{path}"},
        capture_output=True, text=True, timeout=60)
    assert read.returncode == 0 and read.stdout.strip() == "over a socket file", read.stderr
    assert unix_get(path, f"/systemsmanager/parameters/get?name={name}", None)[0] == 403
    health = subprocess.run([sys.executable, "-m", "sidecar", "--healthcheck", f"unix://{path}"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (health.returncode, health.stdout.strip()) == (0, "healthy")
    assert f"unix:{path}" in daemon.output
    assert daemon.terminate() == 0
    assert not os.path.lexists(path)


def test_curl_reads_over_the_unix_socket(start_daemon: StartDaemon, aws: Aws, unique: str,
                                         sock_dir: Path) -> None:
    if not shutil.which("curl"):
        pytest.skip("needs curl")
    name = f"/{unique}/curl"
    aws.ssm.put_parameter(Name=name, Type="String", Value="curl over a socket")
    path = sock_dir / "curl.sock"
    daemon = start_daemon(**{SOCKET: str(path)})
    assert daemon.param(name).headers["X-Cache"] == "miss"  # over TCP first
    curl = subprocess.run(["curl", "-s", "--unix-socket", str(path), "-H",
                           f"{TOKEN_HEADER}: {daemon.token}", "-D", "-",
                           f"http://localhost/systemsmanager/parameters/get?name={name}"],
                          capture_output=True, text=True, timeout=30)
    assert curl.returncode == 0
    head, _, body = curl.stdout.partition("\n\n")  # (text mode: \\r\\n read as \\n)
    assert head.startswith("HTTP/1.1 200") and "X-Cache: hit" in head  # one cache for all
    assert json.loads(body)["Parameter"]["Value"] == "curl over a socket"


def test_the_client_waits_for_a_socket_file_then_names_it(sock_dir: Path) -> None:
    from sidecar_client._transport import Transport, find_endpoint
    from sidecar_client.errors import DaemonUnavailable

    path = sock_dir / "not-yet.sock"
    client = Transport(endpoint=f"unix://{path}", token="t", startup_wait=0.2)
    with pytest.raises(DaemonUnavailable, match=f"nothing listens on unix://{path}"):
        client.get("/ping", [])
    variable = "PARAMETERS_SECRETS_SIDECAR_ENDPOINT"
    assert find_endpoint({variable: f"unix://{path}"}) == str(path)
    with pytest.raises(ValueError, match=variable):
        find_endpoint({variable: "unix://relative.sock"})


@dataclass
class Users:
    group: str
    member: str
    outsider: str


@pytest.fixture
def users() -> Iterator[Users]:
    """A throwaway group with one member, and a throwaway user outside it."""
    if os.geteuid() != 0:
        pytest.skip("creating throwaway users needs root (useradd)")
    for tool in ("useradd", "groupadd", "userdel", "groupdel", "runuser", "curl"):
        if not shutil.which(tool):
            pytest.skip(f"needs {tool}")
    suffix = uuid.uuid4().hex[:8]
    made = Users(f"sdg{suffix}", f"sdm{suffix}", f"sdo{suffix}")
    try:
        subprocess.run(["groupadd", made.group], check=True, capture_output=True)
        for user, extra in ((made.member, ["-G", made.group]), (made.outsider, [])):
            subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", *extra, user],
                           check=True, capture_output=True)
        yield made
    finally:
        for user in (made.member, made.outsider):
            subprocess.run(["userdel", user], capture_output=True)
        subprocess.run(["groupdel", made.group], capture_output=True)


def test_socket_group_lets_members_in_and_keeps_others_out(
        start_daemon: StartDaemon, users: Users, sock_dir: Path) -> None:
    path = sock_dir / "grouped.sock"
    daemon = start_daemon(**{SOCKET: str(path), f"{SOCKET}_GROUP": users.group})
    import grp

    assert path.lstat().st_gid == grp.getgrnam(users.group).gr_gid

    def ping_as(user: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", user, "--", "curl", "-s", "--unix-socket",
                               str(path), "http://localhost/ping"],
                              capture_output=True, text=True, timeout=30)

    member = ping_as(users.member)
    assert (member.returncode, member.stdout) == (0, "healthy"), member.stderr
    outsider = ping_as(users.outsider)
    assert outsider.returncode == 7 and outsider.stdout == ""  # curl: could not connect
    assert daemon.terminate() == 0


def test_a_stale_socket_is_replaced_and_a_live_one_refused(
        start_daemon: StartDaemon, sock_dir: Path) -> None:
    path = sock_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as left:  # a daemon killed before it could clean up
        left.bind(str(path))
    assert stat.S_ISSOCK(path.lstat().st_mode)
    config = sock_dir / "agent.toml"  # the configuration file's key, this time
    config.write_text(f'unix_socket = "{path}"\nvalidate_credentials = false\n')
    daemon = start_daemon(argv=("--config", str(config)))
    assert unix_get(path, "/ping", None) == (200, b"healthy")
    second = start_daemon(wait=False, argv=("--config", str(config)))
    refused_at_start(second, str(path), "another process answers on it")
    assert unix_get(path, "/ping", None) == (200, b"healthy")  # the first one's, untouched
    assert daemon.terminate() == 0
    assert not os.path.lexists(path)


@pytest.mark.parametrize("kind", ["symlink", "file", "dangling symlink"])
def test_what_is_not_a_socket_is_never_replaced(start_daemon: StartDaemon, sock_dir: Path,
                                                kind: str) -> None:
    path, target = sock_dir / "s.sock", sock_dir / "precious"
    if kind == "file":
        path.write_text("keep me")
    else:
        if kind == "symlink":
            target.write_text("keep me")
        path.symlink_to(target)
    daemon = start_daemon(wait=False, **{SOCKET: str(path)})
    refused_at_start(daemon, SOCKET, str(path),
                     "not a socket" if kind == "file" else "symbolic link")
    assert os.path.lexists(path) and path.is_symlink() == (kind != "file")
    assert not target.exists() if kind == "dangling symlink" else \
        (target if kind == "symlink" else path).read_text() == "keep me"


def test_a_directory_anyone_may_write_needs_the_sticky_bit(start_daemon: StartDaemon,
                                                          sock_dir: Path) -> None:
    sock_dir.chmod(0o777)
    daemon = start_daemon(wait=False, **{SOCKET: str(sock_dir / "s.sock")})
    refused_at_start(daemon, "writable by everyone without the sticky bit")
    # Every directory on the way counts (review): a subdirectory of it is no safer, and
    # neither is a symlinked path into it.
    (sock_dir / "sub").mkdir(mode=0o755)
    daemon = start_daemon(wait=False, **{SOCKET: str(sock_dir / "sub" / "s.sock")})
    refused_at_start(daemon, "writable by everyone without the sticky bit")
    link = sock_dir.parent / f"{sock_dir.name}-link"
    link.symlink_to(sock_dir / "sub")
    try:
        daemon = start_daemon(wait=False, **{SOCKET: str(link / "s.sock")})
        refused_at_start(daemon, "writable by everyone without the sticky bit")
    finally:
        link.unlink()
    sock_dir.chmod(0o1777)
    daemon = start_daemon(**{SOCKET: str(sock_dir / "s.sock"), f"{SOCKET}_MODE": "0600"})
    assert stat.S_IMODE((sock_dir / "s.sock").lstat().st_mode) == 0o600
    assert daemon.terminate() == 0


@pytest.mark.parametrize(("variable", "value"), [
    (SOCKET, "relative/s.sock"), (f"{SOCKET}_MODE", "0999"), (f"{SOCKET}_GROUP", "no-such-grp-x"),
])
def test_bad_socket_settings_are_one_line(start_daemon: StartDaemon, sock_dir: Path,
                                          variable: str, value: str) -> None:
    extra = {SOCKET: str(sock_dir / "s.sock"), variable: value}
    refused_at_start(start_daemon(wait=False, **extra), variable, value, "expected")


def test_lambda_binds_every_socket_before_register(start_daemon: StartDaemon, aws: Aws,
                                                  unique: str, sock_dir: Path) -> None:
    path = sock_dir / "lambda.sock"
    port = free_port()

    @dataclass
    class Probing(FakeExtensionsApi):
        unix_open: bool | None = None
        six_open: bool | None = None

        def _port_open(self) -> bool | None:  # called when register arrives
            with socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(0.5)
                self.unix_open = probe.connect_ex(str(path)) == 0
            if not no_ipv6_loopback():
                with socket.socket(socket.AF_INET6) as probe:
                    probe.settimeout(0.5)
                    self.six_open = probe.connect_ex(("::1", port)) == 0
            return super()._port_open()

    api = Probing(check_port=port)
    api.start()
    try:
        daemon = start_daemon(port=str(port), AWS_LAMBDA_RUNTIME_API=api.address,
                              **{SOCKET: str(path)})
        assert api.registered.wait(10)
        assert api.registrations[0].port_open is True and api.unix_open is True
        assert api.six_open is (None if no_ipv6_loopback() else True)
        assert unix_get(path, "/ping", None) == (200, b"healthy")
        api.shutdown("spindown")
        assert daemon.finish(timeout=5) == 0
        assert not os.path.lexists(path)
    finally:
        api.stop()


# -- one more address, guarded ---------------------------------------------------------------

@pytest.mark.parametrize(("extra", "needles"), [
    ({BIND: "127.0.0.3"}, (BIND, ALLOWED)),
    ({BIND: "127.0.0.3", ALLOWED: "127.0.0.2/32", "AWS_TOKEN": ""}, (BIND, "auth token")),
    ({BIND: "0.0.0.0", ALLOWED: "127.0.0.2/32"}, (BIND, "0.0.0.0", "every interface")),
    ({BIND: "::ffff:127.0.0.3", ALLOWED: "127.0.0.2/32"}, (BIND, "IPv6-mapped")),
    ({BIND: "127.0.0.3", ALLOWED: "0.0.0.0/0"}, (ALLOWED, "every address")),
])
def test_the_extra_address_needs_a_token_and_an_allow_list(
        start_daemon: StartDaemon, extra: dict[str, str], needles: tuple[str, ...]) -> None:
    refused_at_start(start_daemon(wait=False, **extra), *needles)


def test_clients_outside_the_allow_list_are_refused_before_the_token(
        start_daemon: StartDaemon) -> None:
    """127.0.0.3 plays this host's address on a shared network, 127.0.0.2 an allowed
    container, 127.0.0.4 one outside the list."""
    daemon = start_daemon(**{BIND: "127.0.0.3", ALLOWED: "127.0.0.2/32"})
    token = {TOKEN_HEADER: daemon.token}
    status, body = get_from("127.0.0.4", "127.0.0.3", daemon.port, "/ping", token)
    assert (status, body["__type"]) == (403, "ClientNotAllowed")
    assert "127.0.0.4" in body["message"] and daemon.token not in json.dumps(body)
    assert get_from("127.0.0.4", "127.0.0.3", daemon.port, "/metrics", token)[0] == 403
    assert get_from("127.0.0.2", "127.0.0.3", daemon.port, "/metrics", token)[0] == 200
    status, body = get_from("127.0.0.2", "127.0.0.3", daemon.port, "/metrics", {})
    assert (status, body["__type"]) == (403, "BadToken")  # allowed clients still need it
    status, body = get_from("127.0.0.2", "127.0.0.3", daemon.port, "/metrics",
                            {**token, "X-Forwarded-For": "127.0.0.2"})
    assert status == 400  # a forwarded request is refused as ever
    assert get_from("127.0.0.1", "127.0.0.3", daemon.port, "/metrics", token)[0] == 200
    # The loopback listener's clients are this host's own: the list does not apply there.
    assert get_from("127.0.0.4", "127.0.0.1", daemon.port, "/metrics", token)[0] == 200
    warnings = [line for line in daemon.output.splitlines() if "beyond loopback" in line]
    assert len(warnings) == 1 and "WARN" in warnings[0]
    assert f"127.0.0.3:{daemon.port}" in warnings[0] and "127.0.0.2/32" in warnings[0]
    assert daemon.terminate() == 0
