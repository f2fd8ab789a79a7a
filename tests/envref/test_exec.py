"""``parameters-secrets-sidecar exec``: references resolved through a running daemon, over its
Unix socket, and ``--standalone``; failures; ``--watch``; ``--template`` on tmpfs only.

Every program started here prints digests of its variables, never the values, and every
output, log and command line is searched for the values at the end of each test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from sidecar import demo
from tests.conftest import FAKE_CREDS, REGION, Aws, StartDaemon
from tests.support.process import Daemon, Process, clean_env, free_port
from tests.support.proxy import FaultProxy

# The program exec starts: one line per variable named in argv, "NAME <digest>" ("-" if unset).
REPORT = """
import hashlib, os, sys
for name in sys.argv[1:]:
    value = os.environ.get(name)
    print(name, "-" if value is None else hashlib.sha256(value.encode()).hexdigest()[:20])
print("pid", os.getpid(), flush=True)
"""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:20]


def secret_value(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex}"


def reported(output: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in output.splitlines()
                if line.count(" ") == 1 and not line.startswith("["))


def exec_env(home: Path, daemon: Daemon | None, **extra: str) -> dict[str, str]:
    base = {"AWS_TOKEN": daemon.token if daemon else "",
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(daemon.port if daemon else free_port())}
    return clean_env(home, {**base, **extra})


def run_exec(env: Mapping[str, str], *argv: str, timeout: float = 60
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar", "exec", *argv], env=dict(env),
                          capture_output=True, text=True, timeout=timeout, check=False)


def assert_nowhere(values: list[str], *texts: str) -> None:
    for value in values:
        for text in texts:
            assert value not in text, "a value appeared in an output, log or command line"


@pytest.fixture
def debug_daemon(start_daemon: StartDaemon) -> Daemon:
    return start_daemon(PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL="debug")


def test_every_form_through_the_daemon(debug_daemon: Daemon, aws: Aws, proxy: FaultProxy,
                                       home: Path, unique: str) -> None:
    host, regions, password, old = (secret_value(x) for x in ("host", "regions", "pw", "old"))
    aws.ssm.put_parameter(Name=f"/{unique}/host", Type="String", Value=host)
    aws.ssm.put_parameter(Name=f"/{unique}/regions", Type="StringList", Value=f"{regions},b")
    aws.ssm.put_parameter(Name=f"/{unique}/pw", Type="SecureString", Value=password)
    aws.ssm.put_parameter(Name=f"/{unique}/v", Type="String", Value=old)
    aws.ssm.put_parameter(Name=f"/{unique}/v", Type="String", Value="second", Overwrite=True)
    pw1, pw2 = secret_value("db1"), secret_value("db2")
    first = {"username": "app", "password": pw1, "port": 5432}
    second = {"username": "app", "password": pw2, "port": 5433}
    created = aws.sm.create_secret(Name=f"{unique}/db", SecretString=json.dumps(first))
    version_one = created["VersionId"]
    aws.sm.put_secret_value(SecretId=f"{unique}/db", SecretString=json.dumps(second))
    plain = secret_value("plain")
    arn = aws.sm.create_secret(Name=f"{unique}/plain", SecretString=plain)["ARN"]
    ssm_arn = aws.ssm.get_parameter(Name=f"/{unique}/host")["Parameter"]["ARN"]
    variables = {
        "HOST": f"{{{{resolve:ssm:/{unique}/host}}}}",
        "HOST_BY_ARN": f"{{{{resolve:ssm:{ssm_arn}}}}}",
        "REGIONS": f"{{{{resolve:ssm:/{unique}/regions}}}}",
        "PASSWORD": f"{{{{resolve:ssm-secure:/{unique}/pw}}}}",
        "OLD": f"{{{{resolve:ssm:/{unique}/v:1}}}}",
        "WHOLE": f"{{{{resolve:secretsmanager:{unique}/db}}}}",
        "DB_PASSWORD": f"{{{{resolve:secretsmanager:{unique}/db:SecretString:password}}}}",
        "DB_PORT": f"{{{{resolve:secretsmanager:{unique}/db::port}}}}",
        "PREVIOUS": f"{{{{ resolve:secretsmanager:{unique}/db:SecretString:password:"
                    "AWSPREVIOUS }}",
        "BY_ID": f"{{{{resolve:secretsmanager:{unique}/db::password::{version_one}}}}}",
        "BY_ARN": f"{{{{resolve:secretsmanager:{arn}::::}}}}",
        "URL": f"postgres://app:{{{{resolve:secretsmanager:{unique}/db::password}}}}@"
               f"{{{{resolve:ssm:/{unique}/host}}}}:5432/app?x={{{{resolve:ssm:/{unique}/host}}}}",
        "TEMPLATE": "Hello {{user}}, {{ name }}",
        "PLAIN": "nothing to see: resolve: {} }}",
    }
    env = exec_env(home, debug_daemon, **variables)
    done = run_exec(env, "--", sys.executable, "-c", REPORT, *variables)
    assert done.returncode == 0, done.stderr
    expected = {
        "HOST": host, "HOST_BY_ARN": host, "REGIONS": f"{regions},b", "PASSWORD": password,
        "OLD": old, "WHOLE": json.dumps(second), "DB_PASSWORD": pw2,
        "DB_PORT": "5433", "PREVIOUS": pw1, "BY_ID": pw1,
        "BY_ARN": plain, "URL": f"postgres://app:{pw2}@{host}:5432/app?x={host}",
        "TEMPLATE": variables["TEMPLATE"], "PLAIN": variables["PLAIN"],
    }
    got = reported(done.stdout)
    assert {name: got[name] for name in expected} == {n: digest(v) for n, v in expected.items()}
    # Daemon reads: one group read per service and decryption, one per JSON key, singles for
    # the versioned; AWS calls: no more than those (the JSON-key groups are cache hits).
    def requests() -> list[str]:
        return [line.split(" path=")[1].split()[0] for line in debug_daemon.output.splitlines()
                if " DEBUG request " in line and unique in line]

    deadline = time.monotonic() + 10  # the daemon's output is read by a thread: it may lag
    while len(requests()) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(requests()) == sorted(
        ["/systemsmanager/parameters/batch"] * 2 + ["/secretsmanager/batch"] * 3
        + ["/systemsmanager/parameters/get"] + ["/secretsmanager/get"] * 2)
    assert proxy.count_matching(unique, "GetParameter") == 1  # /v:1
    assert proxy.count_matching(unique, "BatchGetSecretValue") <= 2  # ARNs go apart
    assert proxy.count_matching(unique, "GetSecretValue") == 2  # AWSPREVIOUS, the version id
    assert_nowhere([host, password, old, plain, pw1, pw2],
                   done.stdout, done.stderr, debug_daemon.output)


def test_a_missing_parameter_stops_the_start_naming_the_variable(
        debug_daemon: Daemon, aws: Aws, home: Path, tmp_path: Path, unique: str) -> None:
    good = secret_value("good")
    aws.ssm.put_parameter(Name=f"/{unique}/good", Type="SecureString", Value=good)
    marker = tmp_path / "started"
    env = exec_env(home, debug_daemon, GOOD=f"{{{{resolve:ssm-secure:/{unique}/good}}}}",
                   DB_PASSWORD=f"x{{{{resolve:ssm-secure:/{unique}/missing}}}}y",
                   SHAPE="{{resolve:ssm:/a:latest}}")
    done = run_exec(env, "--", "touch", str(marker))
    assert done.returncode == 1
    assert not marker.exists(), "the program started"
    lines = done.stderr.splitlines()
    assert (f"[parameters-secrets-sidecar] ERROR cannot resolve DB_PASSWORD: "
            f"{{{{resolve:ssm-secure:/{unique}/missing}}}}: ParameterNotFound") in done.stderr
    assert any("SHAPE: {{resolve:ssm:/a:latest}}: has the VERSION 'latest'" in line
               for line in lines)
    assert len(lines) == 2 and "GOOD" not in done.stderr
    assert_nowhere([good], done.stdout, done.stderr, debug_daemon.output)


def test_on_error_unset_starts_without_the_variable(shared_daemon: Daemon, aws: Aws,
                                                     home: Path, unique: str) -> None:
    value = secret_value("ok")
    aws.ssm.put_parameter(Name=f"/{unique}/ok", Type="String", Value=value)
    env = exec_env(home, shared_daemon, OK=f"{{{{resolve:ssm:/{unique}/ok}}}}",
                   GONE=f"{{{{resolve:secretsmanager:{unique}/none}}}}",
                   PARAMETERS_SECRETS_EXTENSION_ENV_ON_ERROR="unset")
    done = run_exec(env, "--", sys.executable, "-c", REPORT, "OK", "GONE")
    assert done.returncode == 0, done.stderr
    assert reported(done.stdout) | {"pid": ""} == {"OK": digest(value), "GONE": "-", "pid": ""}
    assert "WARN cannot resolve GONE" in done.stderr and "GONE is unset" in done.stderr
    assert "ResourceNotFoundException" in done.stderr
    done = run_exec(env, "--on-error", "fail", "--", "true")  # the option wins
    assert done.returncode == 1 and "ERROR cannot resolve GONE" in done.stderr


def test_exec_becomes_the_command(shared_daemon: Daemon, home: Path) -> None:
    """Same pid, the command's own exit status; no reference: nothing is read at all."""
    env = exec_env(home, shared_daemon, AWS_TOKEN="")  # no token needed without references
    script = "import os, sys; print(os.getpid(), flush=True); sys.exit(7)"
    process = subprocess.Popen([sys.executable, "-m", "sidecar", "exec", "--", sys.executable,
                                "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 7
    assert out.strip() == str(process.pid)
    missing = run_exec(env, "--", "no-such-command-here")
    assert missing.returncode == 127 and "command not found" in missing.stderr


def test_no_daemon_fails_within_the_bound(home: Path) -> None:
    env = exec_env(home, None, AWS_TOKEN="t", A="{{resolve:ssm:/a}}",
                   PARAMETERS_SECRETS_EXTENSION_ENV_TIMEOUT_MILLIS="700")
    started = time.monotonic()
    done = run_exec(env, "--", "true")
    assert done.returncode == 1
    assert time.monotonic() - started < 15
    assert "cannot resolve A: {{resolve:ssm:/a}}: the daemon at http://127.0.0.1:" in done.stderr
    assert "did not answer within 700 ms" in done.stderr
    env.pop("AWS_TOKEN")
    done = run_exec(env, "--", "true")
    assert done.returncode == 1
    assert "no token to ask the daemon with: set one of AWS_TOKEN" in done.stderr


def test_bad_options_are_one_line(home: Path, tmp_path: Path) -> None:
    env = exec_env(home, None, PARAMETERS_SECRETS_EXTENSION_ENV_ON_ERROR="ignore")
    done = run_exec(env, "--", "true")
    assert done.returncode == 2
    assert done.stderr.strip() == ("[parameters-secrets-sidecar] ERROR PARAMETERS_SECRETS_"
                                   "EXTENSION_ENV_ON_ERROR='ignore' is invalid: expected fail "
                                   "or unset")
    done = run_exec(exec_env(home, None), "--interval", "0", "--", "true")
    assert done.returncode == 2 and "--interval 0 is invalid" in done.stderr
    done = run_exec(exec_env(home, None))
    assert done.returncode == 2 and "exec needs a COMMAND" in done.stderr
    done = run_exec(exec_env(home, None), "--standalone", "--endpoint", "unix:///s", "--", "true")
    assert done.returncode == 2 and "takes no --endpoint" in done.stderr
    done = run_exec(exec_env(home, None), "--template", "/etc/hostname:/dev/shm/", "--", "true")
    assert done.returncode == 2 and "expected SRC:DEST" in done.stderr


def test_exec_standalone_needs_no_daemon(proxy: FaultProxy, aws: Aws, home: Path,
                                         unique: str) -> None:
    value = secret_value("standalone")
    aws.sm.create_secret(Name=f"{unique}/s", SecretString=json.dumps({"key": value}))
    env = clean_env(home, {"AWS_ENDPOINT_URL": proxy.url, "AWS_REGION": REGION, **FAKE_CREDS,
                           "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "debug",
                           "KEY": f"{{{{resolve:secretsmanager:{unique}/s::key}}}}"})
    done = run_exec(env, "--standalone", "--", sys.executable, "-c", REPORT, "KEY")
    assert done.returncode == 0, done.stderr + done.stdout
    assert reported(done.stdout)["KEY"] == digest(value)
    assert proxy.count_matching(unique, "BatchGetSecretValue") == 1
    assert "request" in done.stdout  # the in-process daemon's DEBUG lines
    assert_nowhere([value], done.stdout, done.stderr)
    del env["AWS_REGION"]
    done = run_exec(env, "--standalone", "--", "true")
    assert done.returncode == 1 and "needs a region: set AWS_REGION" in done.stderr


def test_exec_over_the_daemons_unix_socket(start_daemon: StartDaemon, aws: Aws, home: Path,
                                          unique: str) -> None:
    socket_path = Path("/tmp") / f"{unique}.sock"
    daemon = start_daemon(PARAMETERS_SECRETS_EXTENSION_UNIX_SOCKET=str(socket_path))
    if not socket_path.exists():
        pytest.skip("this daemon has no Unix socket listener")
    value = secret_value("unix")
    aws.ssm.put_parameter(Name=f"/{unique}/u", Type="String", Value=value)
    env = exec_env(home, daemon, U=f"{{{{resolve:ssm:/{unique}/u}}}}",
                   PARAMETERS_SECRETS_EXTENSION_HTTP_PORT=str(free_port()))  # not the daemon's
    done = run_exec(env, "--endpoint", f"unix://{socket_path}", "--", sys.executable, "-c",
                    REPORT, "U")
    assert done.returncode == 0, done.stderr
    assert reported(done.stdout)["U"] == digest(value)
    env["PARAMETERS_SECRETS_SIDECAR_ENDPOINT"] = f"unix://{socket_path}"
    done = run_exec(env, "--", sys.executable, "-c", REPORT, "U")
    assert reported(done.stdout)["U"] == digest(value)


@pytest.fixture
def shm(unique: str) -> Iterator[Path]:
    folder = Path("/dev/shm") / unique
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    folder.mkdir()
    yield folder
    for item in folder.iterdir():
        item.unlink()
    folder.rmdir()


def test_template_rendered_atomically_on_tmpfs(shared_daemon: Daemon, aws: Aws, home: Path,
                                               tmp_path: Path, shm: Path, unique: str) -> None:
    key = secret_value("key")
    aws.sm.create_secret(Name=f"{unique}/tls", SecretString=json.dumps({"key": key}))
    source = tmp_path / "tls.conf.tpl"
    source.write_text(f"ssl_key {{{{resolve:secretsmanager:{unique}/tls::key}}}};\n{{{{x}}}}\n")
    destination = shm / "tls.conf"
    destination.write_text("old\n")
    with destination.open() as before:  # a reader of the old file keeps it whole
        done = run_exec(exec_env(home, shared_daemon), "--template",
                        f"{source}:{destination}", "--template-owner", "1:1", "--",
                        "cat", str(destination))
        assert before.read() == "old\n"
    assert done.returncode == 0, done.stderr
    assert digest(done.stdout) == digest(f"ssl_key {key};\n{{{{x}}}}\n")
    info = destination.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and (info.st_uid, info.st_gid) == (1, 1)
    assert sorted(p.name for p in shm.iterdir()) == ["tls.conf"]  # no temporary file left
    assert_nowhere([key], done.stderr)


def test_template_on_disk_is_refused_before_any_read(shared_daemon: Daemon, aws: Aws,
                                                     proxy: FaultProxy, home: Path,
                                                     tmp_path: Path, unique: str) -> None:
    aws.ssm.put_parameter(Name=f"/{unique}/k", Type="String", Value="v")
    source = tmp_path / "a.tpl"
    source.write_text(f"{{{{resolve:ssm:/{unique}/k}}}}")
    destination = tmp_path / "a.conf"
    done = run_exec(exec_env(home, shared_daemon), "--template", f"{source}:{destination}",
                    "--", "true")
    assert done.returncode == 2
    assert "is on ext4, not in memory" in done.stderr or "not in memory" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not destination.exists()
    assert proxy.count_matching(unique) == 0


# -- --watch -----------------------------------------------------------------------------------

SIGHUP_CHILD = """
import hashlib, signal, sys, time
path = sys.argv[1]
def show(*_):
    with open(path, "rb") as f:
        print("file", hashlib.sha256(f.read()).hexdigest()[:20], flush=True)
signal.signal(signal.SIGHUP, show)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
show()
while True:
    time.sleep(0.05)
"""

RESTART_CHILD = """
import hashlib, os, signal, sys, time
print("env", hashlib.sha256(os.environ["V"].encode()).hexdigest()[:20], os.getpid(), flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(0.05)
"""


def wait_for(process: Process, needle: str, timeout: float = 30) -> None:
    process.wait_for_output(needle, timeout=timeout)


def test_watch_signals_the_child_when_a_value_changes(
        debug_daemon: Daemon, aws: Aws, home: Path, tmp_path: Path, shm: Path,
        unique: str) -> None:
    name = f"/{unique}/cert"
    first, second = secret_value("one"), secret_value("two")
    aws.ssm.put_parameter(Name=name, Type="SecureString", Value=first)
    source = tmp_path / "cert.tpl"
    source.write_text(f"cert={{{{resolve:ssm-secure:{name}}}}}\n")
    destination = shm / "cert"
    env = exec_env(home, debug_daemon, CERT=f"{{{{resolve:ssm-secure:{name}}}}}")
    process = Process([sys.executable, "-m", "sidecar", "exec", "--watch", "--interval", "1",
                       "--template", f"{source}:{destination}", "--", sys.executable, "-c",
                       SIGHUP_CHILD, str(destination)], env)
    try:
        wait_for(process, f"file {digest(f'cert={first}' + chr(10))}")
        supervisor = process.proc.pid
        cmdline = Path(f"/proc/{supervisor}/cmdline").read_bytes().decode()
        try:
            environ = Path(f"/proc/{supervisor}/environ").read_bytes().decode()
        except PermissionError:  # not root: the supervisor is non-dumpable, as meant
            environ = ""
        aws.ssm.put_parameter(Name=name, Type="SecureString", Value=second, Overwrite=True)
        wait_for(process, f"file {digest(f'cert={second}' + chr(10))}")
        assert "a value changed: sending SIGHUP" in process.output
        process.proc.send_signal(signal.SIGTERM)  # forwarded; the child exits 3
        assert process.finish(timeout=15) == 3
    finally:
        process.kill()
    if environ:  # its own environment: unresolved
        assert "CERT={{resolve:ssm-secure:" in environ
    assert_nowhere([first, second], process.output, debug_daemon.output, cmdline, environ)


def test_watch_restart_starts_the_command_with_the_new_environment(
        shared_daemon: Daemon, aws: Aws, home: Path, unique: str) -> None:
    name = f"{unique}/rotating"
    first, second = secret_value("one"), secret_value("two")
    aws.sm.create_secret(Name=name, SecretString=first)
    env = exec_env(home, shared_daemon, V=f"{{{{resolve:secretsmanager:{name}}}}}")
    process = Process([sys.executable, "-m", "sidecar", "exec", "--watch", "--interval", "1",
                       "--on-change", "restart", "--", sys.executable, "-c", RESTART_CHILD], env)
    try:
        wait_for(process, f"env {digest(first)}")
        aws.sm.put_secret_value(SecretId=name, SecretString=second)
        wait_for(process, f"env {digest(second)}")
        pids = [line.split()[2] for line in process.output.splitlines()
                if line.startswith("env ")]
        assert len(set(pids)) == 2  # a new process, not the same one signalled
        child = int(pids[-1])
        os.kill(child, signal.SIGTERM)  # the command ends by itself: so does the supervisor
        assert process.finish(timeout=15) == 0
    finally:
        process.kill()
    assert_nowhere([first, second], process.output)


def test_watch_keeps_values_when_a_reread_fails(start_daemon: StartDaemon, aws: Aws,
                                               home: Path, unique: str) -> None:
    daemon = start_daemon()
    value = secret_value("kept")
    aws.ssm.put_parameter(Name=f"/{unique}/p", Type="String", Value=value)
    env = exec_env(home, daemon, P=f"{{{{resolve:ssm:/{unique}/p}}}}",
                   PARAMETERS_SECRETS_EXTENSION_ENV_TIMEOUT_MILLIS="5000")
    process = Process([sys.executable, "-m", "sidecar", "exec", "--watch", "--interval", "1",
                       "--on-change", "restart", "--", sys.executable, "-c", RESTART_CHILD],
                      {**env, "V": f"{{{{resolve:ssm:/{unique}/p}}}}"})
    try:
        wait_for(process, f"env {digest(value)}")
        daemon.kill()
        wait_for(process, "the current values stay")
        assert process.proc.poll() is None
        assert process.output.count("env ") == 1  # never restarted
        process.proc.send_signal(signal.SIGINT)  # forwarded: the child dies of it
        assert process.finish(timeout=15) == 128 + signal.SIGINT
    finally:
        process.kill()
    assert_nowhere([value], process.output)


def test_the_readme_snippet_prints_what_it_says_against_the_demo(home: Path,
                                                                 tmp_path: Path) -> None:
    """The README's ``exec`` example, run as written (the console script as ``python -m``)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [block] = [b for b in re.findall(r"^```sh\n(.*?)^```", readme, re.DOTALL | re.MULTILINE)
               if "parameters-secrets-sidecar exec" in b and "prints, against the demo" in b]
    printed = re.search(r"# prints, against the demo: (.*)$", block, re.MULTILINE)
    assert printed is not None
    port = free_port()
    env = clean_env(home, {"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port)})
    daemon = Daemon.attach(Process([sys.executable, "-m", "sidecar", "--demo"], env),
                           demo.DEMO_TOKEN, port)
    try:
        daemon.wait_ready(timeout=120)
        daemon.wait_for_output("export AWS_TOKEN=demo-token")
        script = tmp_path / "snippet.sh"
        script.write_text(block.replace("parameters-secrets-sidecar exec",
                                        f"{sys.executable} -m sidecar exec"))
        done = subprocess.run(["sh", str(script)], env={**env, "AWS_TOKEN": demo.DEMO_TOKEN},
                              capture_output=True, text=True, timeout=60, check=False)
        assert (done.returncode, done.stdout.strip()) == (0, printed.group(1).strip()), \
            done.stderr
    finally:
        daemon.kill()
