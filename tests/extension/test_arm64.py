"""arm64 (Graviton) artifacts, run under qemu-user in an arm64 Debian root on this x86_64
machine. Functional checks only: nothing here is timed, since emulation is slow.

The root comes from ``scripts/arm64-root`` (root, apt-get, debootstrap; cached under
``~/.cache``); the tests skip with its reason where it cannot be had.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAKE_CREDS, REGION, Aws
from tests.support.builds import proc_mounted
from tests.support.lambda_api import FakeExtensionsApi
from tests.support.process import REPO, Daemon, Process, free_port
from tests.support.proxy import FaultProxy

sys.path.insert(0, str(REPO / "scripts"))
from build_layer import unpack

NAME = "parameters-secrets-sidecar"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def arm64_root() -> Iterator[Path]:
    if platform.machine() != "x86_64":
        pytest.skip("emulating arm64 is for x86_64 machines")
    made = subprocess.run(["bash", str(REPO / "scripts" / "arm64-root")], capture_output=True,
                          text=True, check=False)
    if made.returncode != 0:
        pytest.skip("no arm64 root: " + (made.stderr.strip().splitlines() or ["?"])[-1])
    with proc_mounted(Path(made.stdout.strip()), "the arm64 root") as root:
        yield root


def run_in_root(root: Path, launcher: str, home: Path, proxy: FaultProxy, aws: Aws,
                unique: str) -> None:
    """Start ``launcher`` (a path inside the root) as a Lambda extension; read; SHUTDOWN."""
    name = f"/{unique}/arm64"
    aws.ssm.put_parameter(Name=name, Type="String", Value="served on arm64")
    port = free_port()
    api = FakeExtensionsApi(check_port=port).start()
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "AWS_LAMBDA_RUNTIME_API": api.address,
           "AWS_ENDPOINT_URL": proxy.url, "AWS_REGION": REGION, "AWS_TOKEN": "arm-token",
           "AWS_EC2_METADATA_DISABLED": "true",
           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port), **FAKE_CREDS}
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    daemon = Daemon.attach(Process([chroot, str(root), launcher], env, cwd=home),
                           "arm-token", port)
    try:
        daemon.wait_ready(timeout=120)
        assert api.registrations[0].name == NAME
        response = daemon.param(name)
        assert response.status_code == 200, response.text
        assert response.json()["Parameter"]["Value"] == "served on arm64"
        api.shutdown(window_ms=10_000)  # emulation is slow; the deadline is not under test
        assert daemon.finish(timeout=30) == 0
    finally:
        daemon.kill()
        api.stop()


def _fresh_opt(root: Path, layer: Path) -> None:
    opt = root / "opt"
    shutil.rmtree(opt, ignore_errors=True)
    unpack(layer, opt)


def test_arm64_python_layer_serves_under_emulation(
        arm64_root: Path, tmp_path_factory: pytest.TempPathFactory, home: Path,
        proxy: FaultProxy, aws: Aws, unique: str) -> None:
    out = tmp_path_factory.mktemp("arm64-layer")
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_layer.py"), "--arch", "arm64",
                    "--python-versions", "3.11", "--out", str(out),
                    "--work", str(tmp_path_factory.mktemp("work"))], check=True)
    layer = out / f"{NAME}-arm64.zip"
    _fresh_opt(arm64_root, layer)
    elf = (arm64_root / "opt" / NAME).rglob("*.so")
    assert any(path.read_bytes()[18:20] == b"\xb7\x00" for path in elf)  # e_machine: AArch64
    run_in_root(arm64_root, f"/opt/extensions/{NAME}", home, proxy, aws, unique)


@pytest.mark.timeout(1800)
def test_arm64_binary_layer_builds_and_serves_under_emulation(
        arm64_root: Path, tmp_path_factory: pytest.TempPathFactory, home: Path,
        proxy: FaultProxy, aws: Aws, unique: str) -> None:
    if not os.environ.get("SIDECAR_TEST_ARM64_BINARY"):
        pytest.skip("building the arm64 binary under emulation takes ~10 minutes: "
                    "set SIDECAR_TEST_ARM64_BINARY=1 to run it")
    out = tmp_path_factory.mktemp("arm64-binary")
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_layer.py"), "--binary",
                    "--arch", "arm64", "--out", str(out)], check=True)
    layer = out / f"{NAME}-binary-arm64.zip"
    _fresh_opt(arm64_root, layer)
    internal = arm64_root / "opt" / NAME / "_internal"
    assert (internal / "ld-linux-aarch64.so.1").exists()  # its own arm64 loader and C library
    run_in_root(arm64_root, f"/opt/extensions/{NAME}", home, proxy, aws, unique)
