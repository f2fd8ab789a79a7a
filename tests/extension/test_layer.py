"""The built layer, unpacked like /opt, run by its launcher under a bare Python per version."""

from __future__ import annotations

import stat
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAKE_CREDS, REGION, Aws
from tests.support import runtimes
from tests.support.lambda_api import FakeExtensionsApi
from tests.support.process import REPO, Daemon, Process, clean_env, free_port
from tests.support.proxy import FaultProxy

sys.path.insert(0, str(REPO / "scripts"))
from build_layer import VERSIONS, available_versions, bare_python, unpack

LAUNCHER = "extensions/parameters-secrets-sidecar"
PRESENT = available_versions()


def need(version: str) -> None:
    if version not in PRESENT:
        pytest.skip(f"no CPython {version} on this machine (Debian bookworm has only 3.11; "
                    "pyenv or python.org builds add the others)")


@pytest.fixture(scope="session")
def layer_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # Built for the interpreters this machine has (a release build needs all of them).
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_layer.py"), "--arch", "x86_64",
                    "--python-versions", ",".join(PRESENT),
                    "--out", str(out), "--work", str(tmp_path_factory.mktemp("work"))],
                   check=True)
    return out / "parameters-secrets-sidecar-x86_64.zip"


@pytest.fixture(scope="session")
def opt(layer_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The zip unpacked as Lambda does, then made read-only."""
    root = unpack(layer_zip, tmp_path_factory.mktemp("opt"))
    paths = sorted(root.rglob("*"), reverse=True)
    for path in paths:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    yield root
    for path in [root, *paths]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def archive_info(layer: Path, name: str) -> zipfile.ZipInfo:
    with zipfile.ZipFile(layer) as archive:
        return archive.getinfo(name)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def test_layer_has_the_documented_layout(layer_zip: Path) -> None:
    with zipfile.ZipFile(layer_zip) as archive:
        names = set(archive.namelist())
        launcher = archive.getinfo(LAUNCHER)
    assert (launcher.external_attr >> 16) & 0o111  # executable
    assert "parameters-secrets-sidecar/bootstrap.py" in names
    assert "parameters-secrets-sidecar/envwrap.py" in names  # the exec wrapper's entry
    wrapper = archive_info(layer_zip, "parameters-secrets-sidecar/exec-wrapper")
    assert (wrapper.external_attr >> 16) & 0o111
    assert "python/sidecar_client/__init__.py" in names  # the client, on /opt/python
    assert "python/sidecar_client/py.typed" in names
    assert "parameters-secrets-sidecar/common/sidecar/__main__.py" in names
    for tag in ("cp" + version.replace(".", "") for version in PRESENT):
        assert any(n.startswith(f"parameters-secrets-sidecar/{tag}/aiohttp/") and n.endswith(".so")
                   for n in names), f"no compiled aiohttp for {tag}"
        assert any(f"cpython-{tag[2:]}.pyc" in n for n in names)
    services = {n.split("/")[4] for n in names if "/botocore/data/" in n and n.count("/") > 5}
    assert services == {"ssm", "secretsmanager", "sts", "s3", "appconfigdata"}
    assert not [n for n in names if "/tests/" in n]
    assert layer_zip.stat().st_size < 25 * 1024 * 1024


@pytest.mark.parametrize("version", VERSIONS)
def test_layer_serves_under_a_bare_python(version: str, opt: Path, tmp_path: Path, home: Path,
                                          proxy: FaultProxy, aws: Aws, unique: str) -> None:
    need(version)
    bin_dir = bare_python(version, tmp_path)
    if bin_dir is None:
        pytest.skip(f"no CPython {version} on this machine")
    probe = subprocess.run([str(bin_dir / "python3"), "-c", "import aiohttp"],
                           capture_output=True, check=False)
    assert probe.returncode != 0, "the bare interpreter must not have the dependencies"
    name = f"/{unique}/layer"
    aws.ssm.put_parameter(Name=name, Type="String", Value=f"served by {version}")
    before = snapshot(opt)
    port = free_port()
    api = FakeExtensionsApi(check_port=port).start()
    env = clean_env(home, {
        "PATH": f"{bin_dir}:/usr/bin:/bin", "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_ENDPOINT_URL": proxy.url, "AWS_REGION": REGION, "AWS_TOKEN": "layer-token",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port),
        "PYTHONDONTWRITEBYTECODE": "", **FAKE_CREDS,
    })
    env.pop("PYTHONPATH", None)
    process = Process([str(opt / LAUNCHER)], env, cwd=tmp_path)
    daemon = Daemon.attach(process, "layer-token", port)
    try:
        daemon.wait_ready()
        assert api.registrations[0].name == "parameters-secrets-sidecar"
        assert api.registrations[0].port_open is True
        environ = Path(f"/proc/{process.proc.pid}/environ").read_bytes().split(b"\0")
        pythonpath = [e for e in environ if e.startswith(b"PYTHONPATH=")]
        assert pythonpath == [f"PYTHONPATH={opt}/extensions/../parameters-secrets-sidecar".encode()]
        response = daemon.param(name)
        assert response.status_code == 200
        assert response.json()["Parameter"]["Value"] == f"served by {version}"
        api.shutdown()
        assert daemon.finish() == 0
    finally:
        daemon.kill()
        api.stop()
    assert snapshot(opt) == before, "the layer wrote into /opt"


def test_launcher_without_python_says_so(opt: Path, tmp_path: Path, home: Path) -> None:
    env = clean_env(home, {"PATH": str(tmp_path), "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"})
    done = subprocess.run(["/bin/sh", str(opt / LAUNCHER)], env=env, capture_output=True,
                          text=True, check=False)
    if Path("/var/lang/bin/python3").exists():
        pytest.skip("this machine has Lambda's python3, which the launcher always finds")
    assert done.returncode != 0
    assert "no python3" in done.stdout


CLIENT_SCRIPT = """
import sys
sys.path[:0] = [sys.argv[1]]  # Lambda puts /opt/python on a Python function's sys.path
from sidecar_client import get_parameter
print(get_parameter(sys.argv[2]))
"""


def test_function_init_code_reads_through_the_layer_client(
        opt: Path, tmp_path: Path, home: Path, proxy: FaultProxy, aws: Aws,
        unique: str) -> None:
    """A bare interpreter imports the client from the layer's python/ and reads a value while
    the extension is still starting (the function's INIT code runs meanwhile)."""
    bin_dir = bare_python(PRESENT[0], tmp_path)
    assert bin_dir is not None
    name = f"/{unique}/from-init"
    aws.ssm.put_parameter(Name=name, Type="String", Value="read during INIT")
    port = free_port()
    api = FakeExtensionsApi(check_port=port).start()
    env = clean_env(home, {
        "PATH": f"{bin_dir}:/usr/bin:/bin", "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_ENDPOINT_URL": proxy.url, "AWS_REGION": REGION, "AWS_TOKEN": "layer-token",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port), **FAKE_CREDS,
    })
    env.pop("PYTHONPATH", None)
    daemon = Daemon.attach(Process([str(opt / LAUNCHER)], env, cwd=tmp_path), "layer-token", port)
    try:
        assert api.registered.wait(20)  # no wait for readiness: INIT code runs now
        init = subprocess.run([str(bin_dir / "python3"), "-c", CLIENT_SCRIPT, str(opt / "python"),
                               name], env=env, capture_output=True, text=True, timeout=60,
                              check=False)
        assert init.returncode == 0, init.stderr[-2000:]
        assert init.stdout.strip() == "read during INIT"
        api.shutdown()
        assert daemon.finish() == 0
    finally:
        daemon.kill()
        api.stop()


def test_exec_wrapper_gives_the_runtime_its_values(opt: Path, tmp_path: Path, home: Path,
                                                   proxy: FaultProxy, aws: Aws,
                                                   unique: str) -> None:
    """AWS_LAMBDA_EXEC_WRAPPER=/opt/parameters-secrets-sidecar/exec-wrapper, as built: the
    runtime (a bare Python) sees the value at its first line, read through the layer's daemon."""
    bin_dir = bare_python(PRESENT[0], tmp_path)
    assert bin_dir is not None
    value = f"from-the-layer-{uuid.uuid4().hex}"
    aws.ssm.put_parameter(Name=f"/{unique}/wrapped", Type="SecureString", Value=value)
    port = free_port()
    api = FakeExtensionsApi(check_port=port, runtime_ready_at_start=False).start()
    env = clean_env(home, {
        "PATH": f"{bin_dir}:/usr/bin:/bin", "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_ENDPOINT_URL": proxy.url, "AWS_REGION": REGION, "AWS_TOKEN": "layer-token",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port), **FAKE_CREDS,
    })
    env.pop("PYTHONPATH", None)
    daemon = Daemon.attach(Process([str(opt / LAUNCHER)], env, cwd=tmp_path), "layer-token", port)
    script = runtimes.write(tmp_path, "runtime.py", runtimes.PYTHON_RUNTIME)
    try:
        assert api.registered.wait(20)  # Lambda starts the runtime now
        runtime = Process([str(opt / "parameters-secrets-sidecar" / "exec-wrapper"), "python3",
                           str(script), "SECRET"],
                          {**env, "SECRET": f"{{{{resolve:ssm-secure:/{unique}/wrapped}}}}"},
                          cwd=tmp_path)
        runtime.wait_for_output("pid ", timeout=60)
        assert api.init_ended.wait(30)
        digests, _, pid = runtimes.parse(runtime.output)
        assert digests == {"SECRET": runtimes.digest(value)}
        assert pid == runtime.proc.pid
        runtime.kill()
        api.shutdown()
        assert daemon.finish() == 0
        assert value not in runtime.output + daemon.output
    finally:
        daemon.kill()
        api.stop()
