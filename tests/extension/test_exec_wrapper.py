"""The Lambda exec wrapper (``AWS_LAMBDA_EXEC_WRAPPER=/opt/parameters-secrets-sidecar/exec-
wrapper``) under the fake Extensions API, with real runtime processes: a stdlib Python one
under a bare interpreter, a Node one when ``node`` is here, and in the binary layer a shell one
with no Python at all. The runtime's first line sees the resolved values; nothing else does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import FAKE_CREDS, REGION, Aws, StartDaemon
from tests.support import runtimes
from tests.support.lambda_api import FakeExtensionsApi
from tests.support.process import REPO, Daemon, Process, clean_env, free_port
from tests.support.proxy import FaultProxy

sys.path.insert(0, str(REPO / "scripts"))
from build_layer import bare_python, unpack

NAME = "parameters-secrets-sidecar"


@pytest.fixture(scope="module")
def python_wrapper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python layer's wrapper as the layer lays it out (its script, its entry, the code in
    ``common``), without building the whole layer: it needs none of the daemon's dependencies."""
    root = tmp_path_factory.mktemp("opt") / NAME
    shutil.copytree(REPO / "sidecar", root / "common" / "sidecar",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for part in ("exec-wrapper", "envwrap.py"):
        shutil.copy2(REPO / "layer" / NAME / part, root / part)
    return root / "exec-wrapper"


@pytest.fixture(scope="module")
def bare_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with nothing installed: the runtime's own, as in Lambda."""
    found = bare_python(f"{sys.version_info[0]}.{sys.version_info[1]}",
                        tmp_path_factory.mktemp("bare"))
    assert found is not None
    return found


def secret(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex}"


@contextmanager
def sandbox(start_extension: StartDaemon) -> Iterator[tuple[FakeExtensionsApi, Daemon]]:
    """The fake Extensions API with the extension registered: Lambda starts the runtime then."""
    port = free_port()
    api = FakeExtensionsApi(check_port=port, runtime_ready_at_start=False).start()
    try:
        extension = start_extension(wait=False, port=str(port),
                                    AWS_LAMBDA_RUNTIME_API=api.address,
                                    PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL="debug")
        assert api.registered.wait(30)
        yield api, extension
    finally:
        api.stop()


def function_env(home: Path, api: FakeExtensionsApi, extension: Daemon, path: str,
                 **variables: str) -> dict[str, str]:
    env = clean_env(home, {"PATH": path, "AWS_LAMBDA_RUNTIME_API": api.address,
                           "AWS_TOKEN": extension.token, "AWS_REGION": REGION,
                           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(extension.port),
                           "AWS_LAMBDA_EXEC_WRAPPER": "/opt/parameters-secrets-sidecar/"
                                                      "exec-wrapper", **variables})
    env.pop("PYTHONPATH", None)
    return env


def seed(aws: Aws, unique: str) -> tuple[dict[str, str], dict[str, str]]:
    """Variables holding references, and the values they must become."""
    password, host = secret("pw"), secret("host")
    aws.ssm.put_parameter(Name=f"/{unique}/password", Type="SecureString", Value=password)
    aws.ssm.put_parameter(Name=f"/{unique}/host", Type="String", Value=host)
    aws.sm.create_secret(Name=f"{unique}/db", SecretString=json.dumps({"user": "app",
                                                                        "password": password}))
    variables = {
        "DB_PASSWORD": f"{{{{resolve:ssm-secure:/{unique}/password}}}}",
        "DB_URL": f"postgres://{{{{resolve:secretsmanager:{unique}/db::user}}}}:"
                  f"{{{{resolve:secretsmanager:{unique}/db::password}}}}@"
                  f"{{{{ resolve:ssm:/{unique}/host }}}}/app",
        "GREETING": "hello {{name}}",
    }
    expected = {"DB_PASSWORD": password, "DB_URL": f"postgres://app:{password}@{host}/app",
                "GREETING": "hello {{name}}"}
    return variables, expected


def run_runtime(wrapper: Path, argv: list[str], env: dict[str, str], api: FakeExtensionsApi,
                cwd: Path, expected: dict[str, str], extension: Daemon) -> None:
    """Start the runtime through the wrapper, as Lambda does; check what it saw, and that no
    value is in any output, log or command line."""
    runtime = Process([str(wrapper), *argv, *expected], env, cwd=cwd)
    try:
        runtime.wait_for_output("pid ", timeout=60)
        assert api.init_ended.wait(30), "the runtime never finished its INIT"
        digests, names, pid = runtimes.parse(runtime.output)
        assert digests == {name: runtimes.digest(value) for name, value in expected.items()}
        assert pid == runtime.proc.pid  # the wrapper became the runtime: nothing of it is left
        # The environment as given, nothing added or dropped but the working directory that
        # a shell exports (Lambda's own runtime bootstraps are shell scripts too).
        assert set(names) - {"PWD"} == set(env)
        seen = runtime.output + extension.output + runtimes.cmdline(pid)
    finally:
        runtime.kill()
    for value in expected.values():
        if "{{" not in value:
            assert value not in seen


def test_python_runtime_sees_the_values_at_its_first_line(
        python_wrapper: Path, bare_bin: Path, start_daemon: StartDaemon, aws: Aws, home: Path,
        tmp_path: Path, unique: str) -> None:
    probe = subprocess.run([str(bare_bin / "python3"), "-c", "import aiohttp"],
                           capture_output=True, check=False)
    assert probe.returncode != 0, "the runtime's Python must not have the daemon's dependencies"
    variables, expected = seed(aws, unique)
    script = runtimes.write(tmp_path, "runtime.py", runtimes.PYTHON_RUNTIME)
    with sandbox(start_daemon) as (api, extension):
        env = function_env(home, api, extension, f"{bare_bin}:/usr/bin:/bin", **variables)
        run_runtime(python_wrapper, ["python3", str(script)], env, api, tmp_path, expected,
                    extension)


def test_node_runtime_sees_the_values_at_its_first_line(
        python_wrapper: Path, bare_bin: Path, start_daemon: StartDaemon, aws: Aws, home: Path,
        tmp_path: Path, unique: str) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on PATH")
    variables, expected = seed(aws, unique)
    script = runtimes.write(tmp_path, "runtime.js", runtimes.NODE_RUNTIME)
    with sandbox(start_daemon) as (api, extension):
        path = f"{bare_bin}:{Path(node).parent}:/usr/bin:/bin"
        env = function_env(home, api, extension, path, **variables)
        run_runtime(python_wrapper, [node, str(script)], env, api, tmp_path, expected, extension)


def test_an_unresolvable_reference_fails_init_naming_the_variable(
        python_wrapper: Path, bare_bin: Path, start_daemon: StartDaemon, aws: Aws, home: Path,
        tmp_path: Path, unique: str) -> None:
    value = secret("good")
    aws.ssm.put_parameter(Name=f"/{unique}/good", Type="String", Value=value)
    script = runtimes.write(tmp_path, "runtime.py", runtimes.PYTHON_RUNTIME)
    with sandbox(start_daemon) as (api, extension):
        env = function_env(home, api, extension, f"{bare_bin}:/usr/bin:/bin",
                           GOOD=f"{{{{resolve:ssm:/{unique}/good}}}}",
                           API_KEY=f"{{{{resolve:secretsmanager:{unique}/missing::key}}}}")
        runtime = Process([str(python_wrapper), "python3", str(script), "GOOD"], env,
                          cwd=tmp_path)
        assert runtime.finish(timeout=60) == 1
        assert "pid " not in runtime.output and not api.init_ended.is_set()
        assert runtime.output.splitlines() == [
            f"[parameters-secrets-sidecar] ERROR cannot resolve API_KEY: "
            f"{{{{resolve:secretsmanager:{unique}/missing::key}}}}: ResourceNotFoundException: "
            + runtime.output.split("ResourceNotFoundException: ", 1)[1].strip()]
        assert value not in runtime.output + extension.output


def test_without_references_the_wrapper_starts_nothing(python_wrapper: Path, home: Path,
                                                       tmp_path: Path) -> None:
    """No Python needed, no daemon asked: the runtime is exec'd at once. With a reference and
    no python3, one line says what is missing."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "sh").symlink_to("/bin/sh")
    env = clean_env(home, {"PATH": str(tools), "A": "plain"})
    done = subprocess.run([str(python_wrapper), "sh", "-c", 'echo "started $A"'], env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stdout) == (0, "started plain\n")
    env["A"] = "{{resolve:ssm:/a}}"
    done = subprocess.run([str(python_wrapper), "sh", "-c", "echo started"], env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    if Path("/var/lang/bin/python3").exists():
        pytest.skip("this machine has Lambda's python3, which the wrapper always finds")
    assert done.returncode == 1 and "started" not in done.stdout
    assert "no python3 to resolve references with" in done.stderr


@pytest.mark.slow
def test_binary_layer_wrapper_needs_no_python(
        binary: Path, tmp_path: Path, home: Path, proxy: FaultProxy, aws: Aws,
        unique: str) -> None:
    opt = unpack(binary, tmp_path / "opt")
    wrapper = opt / NAME / "exec-wrapper"
    assert os.access(wrapper, os.X_OK)
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in runtimes.SH_TOOLS:
        found = shutil.which(tool)
        assert found is not None
        (tools / tool).symlink_to(found)
    variables, expected = seed(aws, unique)
    script = runtimes.write(tmp_path, "runtime.sh", runtimes.SH_RUNTIME)
    port = free_port()
    api = FakeExtensionsApi(check_port=port).start()
    token = "binary-" + uuid.uuid4().hex
    base = {"PATH": str(tools), "AWS_LAMBDA_RUNTIME_API": api.address, "AWS_TOKEN": token,
            "AWS_REGION": REGION, "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port)}
    extension = Daemon.attach(Process([str(opt / "extensions" / NAME)], clean_env(home, {
        **base, "AWS_ENDPOINT_URL": proxy.url, **FAKE_CREDS}), cwd=tmp_path), token, port)
    try:
        assert api.registered.wait(60)
        env = clean_env(home, {**base, **variables})
        env.pop("PYTHONPATH", None)
        started = time.monotonic()
        runtime = Process([str(wrapper), "sh", str(script), *expected], env, cwd=tmp_path)
        runtime.wait_for_output("pid ", timeout=60)
        digests, names, pid = runtimes.parse(runtime.output)
        assert digests == {name: runtimes.digest(value) for name, value in expected.items()}
        assert pid == runtime.proc.pid
        assert set(names) - {"PWD"} == set(env)  # no _PYI_* or LD_LIBRARY_PATH from the bundle
        assert time.monotonic() - started < 30
        seen = runtime.output + extension.output + runtimes.cmdline(pid)
        for value in expected.values():
            assert "{{" in value or value not in seen
        api.shutdown()
        assert extension.finish(timeout=10) == 0
    finally:
        extension.kill()
        api.stop()
