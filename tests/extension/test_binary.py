"""The self-contained binary layer: no Python on the host, an older glibc than it was built
on, a read-only tree, and nothing ever written to /tmp (it runs in place, never unpacking)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAKE_CREDS, REGION, Aws
from tests.support.lambda_api import FakeExtensionsApi
from tests.support.process import REPO, Daemon, Process, clean_env, free_port
from tests.support.proxy import FaultProxy

sys.path.insert(0, str(REPO / "scripts"))
from build_layer import unpack

NAME = "parameters-secrets-sidecar"


def install(layer: Path, opt: Path) -> Path:
    """The layer zip unpacked as Lambda does into ``opt``, made read-only; the launcher."""
    unpack(layer, opt)
    for path in sorted(opt.rglob("*"), reverse=True):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~0o222)
    return opt / "extensions" / NAME


def read_only(argv: list[str], *trees: Path) -> list[str]:
    """``argv`` with /tmp and ``trees`` mounted read-only (a hardened container's view)."""
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if not unshare or not mount or os.geteuid() != 0:
        pytest.skip("needs root, unshare and mount to run with a read-only /tmp")
    probe = subprocess.run([unshare, "--mount", "true"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:  # a chroot, or a container without CAP_SYS_ADMIN
        pytest.skip("private mount namespaces are not available here: "
                    + probe.stderr.strip()[:200])
    mounts = " && ".join(f"{mount} -o bind,ro {path} {path}" for path in ("/tmp", *trees))
    return [unshare, "--mount", "/bin/sh", "-c", f'{mounts} && exec "$0" "$@"', *argv]


def unpacked_leftovers() -> set[str]:
    return {p.name for p in Path("/tmp").iterdir()
            if p.name.startswith(("_MEI", "staticx-", "onefile_"))}


@pytest.fixture
def writable_again(tmp_path: Path) -> Iterator[None]:
    yield
    for path in tmp_path.rglob("*"):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)


def run_as_extension(argv: list[str], launcher_name: str, home: Path, proxy: FaultProxy,
                     aws: Aws, unique: str, cwd: Path) -> None:
    """Start ``argv`` under a fake Extensions API; read a value; SHUTDOWN; exit 0."""
    name = f"/{unique}/binary"
    aws.ssm.put_parameter(Name=name, Type="String", Value="from the binary")
    port = free_port()
    api = FakeExtensionsApi(check_port=port).start()
    env = clean_env(home, {
        "PATH": "/nonexistent", "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_ENDPOINT_URL": proxy.url, "AWS_REGION": REGION, "AWS_TOKEN": "binary-token",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port), **FAKE_CREDS,
    })
    env.pop("PYTHONPATH", None)
    daemon = Daemon.attach(Process(argv, env, cwd=cwd), "binary-token", port)
    try:
        daemon.wait_ready(timeout=60)
        assert api.registrations[0].name == launcher_name
        assert api.registrations[0].port_open is True
        response = daemon.param(name)
        assert response.status_code == 200
        assert response.json()["Parameter"]["Value"] == "from the binary"
        api.shutdown()
        assert daemon.finish() == 0
    finally:
        daemon.kill()
        api.stop()


def test_binary_runs_without_python_read_only_and_writes_nothing(
        binary: Path, tmp_path: Path, home: Path, proxy: FaultProxy, aws: Aws, unique: str,
        writable_again: None) -> None:
    before = unpacked_leftovers()
    launcher = install(binary, tmp_path / "opt")
    run_as_extension(read_only([str(launcher)], tmp_path / "opt"), NAME, home, proxy, aws,
                     unique, tmp_path)
    assert unpacked_leftovers() == before


def test_binary_leaves_nothing_behind_when_killed(binary: Path, tmp_path: Path, home: Path,
                                                  writable_again: None) -> None:
    before = unpacked_leftovers()
    launcher = install(binary, tmp_path / "opt")
    port = free_port()
    env = clean_env(home, {"PATH": "/nonexistent", "AWS_TOKEN": "t", "AWS_REGION": REGION,
                           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port), **FAKE_CREDS})
    daemon = Daemon.attach(Process([str(launcher)], env, cwd=tmp_path), "t", port)
    daemon.wait_ready(timeout=60)
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(10)
    assert unpacked_leftovers() == before


def test_healthcheck_writes_nothing(binary: Path, tmp_path: Path, home: Path,
                                    writable_again: None) -> None:
    launcher = install(binary, tmp_path / "opt")
    port = free_port()
    env = clean_env(home, {"AWS_TOKEN": "t", "AWS_REGION": REGION,
                           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port), **FAKE_CREDS})
    argv = read_only([str(launcher), "--healthcheck"], tmp_path / "opt")
    down = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert (down.returncode, down.stdout.strip()) == (1, "unhealthy")
    daemon = Daemon.attach(Process([str(launcher)], env, cwd=tmp_path), "t", port)
    try:
        daemon.wait_ready(timeout=60)
        up = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        assert (up.returncode, up.stdout.strip()) == (0, "healthy")
    finally:
        daemon.kill()


def test_binary_registers_under_its_file_name(binary: Path, tmp_path: Path, home: Path,
                                              proxy: FaultProxy, aws: Aws, unique: str,
                                              writable_again: None) -> None:
    unpack(binary, tmp_path / "opt")
    renamed = tmp_path / "opt" / "extensions" / "my-secrets-cache"
    (tmp_path / "opt" / "extensions" / NAME).rename(renamed)
    run_as_extension([str(renamed)], "my-secrets-cache", home, proxy, aws, unique, tmp_path)


@pytest.mark.slow
def test_binary_runs_on_glibc_2_31(binary: Path, old_rootfs: Path, home: Path,
                                   proxy: FaultProxy, aws: Aws, unique: str) -> None:
    libc = sorted(old_rootfs.glob("lib/x86_64-linux-gnu/libc-*.so"))
    assert libc and "2.31" in libc[0].name, libc  # older than this machine's
    opt = old_rootfs / "opt"
    shutil.rmtree(opt, ignore_errors=True)
    unpack(binary, opt)
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    run_as_extension([chroot, str(old_rootfs), f"/opt/extensions/{NAME}"], NAME, home, proxy,
                     aws, unique, old_rootfs)
