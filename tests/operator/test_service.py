"""Installed as a systemd service: the units pass systemd's own checks, the install script works
in a throwaway Debian root (token file readable by its group only, the daemon serving as an
unprivileged user), uninstall removes it all, and the runtime works under the kernel's
memory-deny-write-execute (what ``MemoryDenyWriteExecute=yes`` asks for)."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import FAKE_CREDS, REGION, Aws
from tests.support.builds import proc_mounted
from tests.support.process import REPO, Daemon, Process, clean_env, free_port
from tests.support.proxy import FaultProxy

sys.path.insert(0, str(REPO / "scripts"))
from build_layer import unpack

NAME = "parameters-secrets-sidecar"
SERVICE = REPO / "service"
UNITS = (f"{NAME}.service", f"{NAME}-token.service")
TOKEN_GROUP = "awssmatokenreader"
PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1
# Sets memory-deny-write-execute on itself, then becomes the command (the flag survives exec).
MDWE_WRAPPER = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    sys.exit("PR_SET_MDWE failed")
os.execvp(sys.argv[1], sys.argv[1:])
"""


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is missing (Debian package systemd)")
    return found


def _unit_root(tmp_path: Path) -> Path:
    """A root holding the units, what they run, and systemd's own targets (verify needs them)."""
    root = tmp_path / "root"
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(SERVICE / unit, units / unit)
    for program in (f"opt/{NAME}/extensions/{NAME}", f"opt/{NAME}/bin/{NAME}-token"):
        (root / program).parent.mkdir(parents=True, exist_ok=True)
        (root / program).write_text("#!/bin/sh\n")
        (root / program).chmod(0o755)
    system = root / "usr" / "lib" / "systemd" / "system"
    system.mkdir(parents=True)
    for source in Path("/usr/lib/systemd/system").glob("*.target"):
        shutil.copy(source, system / source.name)
    return root


@pytest.mark.timeout(60)
def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _analyze()
    root = _unit_root(tmp_path)
    checked = subprocess.run([analyze, "verify", f"--root={root}",
                              *(f"/etc/systemd/system/{unit}" for unit in UNITS)],
                             capture_output=True, text=True, check=False)
    # verify exits 0 on unknown keys too (it only warns): any output is a finding.
    assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip(), \
        checked.stdout + checked.stderr


@pytest.mark.timeout(60)
def test_the_service_unit_is_hardened(tmp_path: Path) -> None:
    analyze = _analyze()
    root = _unit_root(tmp_path)
    text = (SERVICE / f"{NAME}.service").read_text()
    for setting in ("DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
                    "MemoryDenyWriteExecute=yes", "LimitCORE=0", "CapabilityBoundingSet=\n"):
        assert setting in text
    # systemd's own exposure score, 0 (locked down) to 10: at most 2 ("OK").
    scored = subprocess.run([analyze, "security", "--offline=true", f"--root={root}",
                             "--threshold=20", f"/etc/systemd/system/{NAME}.service"],
                            capture_output=True, text=True, check=False)
    assert scored.returncode == 0, scored.stdout[-2000:]
    assert "Overall exposure level" in scored.stdout


def _mdwe_supported() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) >= 0)


@pytest.mark.timeout(120)
def test_the_daemon_serves_under_memory_deny_write_execute(home: Path, proxy: FaultProxy,
                                                           aws: Aws, token: str,
                                                           unique: str) -> None:
    if not _mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    name = f"{unique}-mdwe"
    aws.sm.create_secret(Name=name, SecretString="v")
    port = free_port()
    env = clean_env(home, {"AWS_ENDPOINT_URL": proxy.url, "AWS_REGION": REGION,
                           "AWS_TOKEN": token, **FAKE_CREDS,
                           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port)})
    process = Process([sys.executable, "-c", MDWE_WRAPPER, sys.executable, "-m", "sidecar"], env)
    daemon = Daemon.attach(process, token, port)
    try:
        daemon.wait_ready()
        assert daemon.secret(name).status_code == 200
    finally:
        daemon.kill()


@pytest.fixture
def throwaway_root(old_rootfs: Path, tmp_path: Path) -> Iterator[Path]:
    """The cached bullseye tree under an overlay: every change lands in ``tmp_path``."""
    merged, upper, work = tmp_path / "merged", tmp_path / "upper", tmp_path / "work"
    for path in (merged, upper, work):
        path.mkdir()
    mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                              f"lowerdir={old_rootfs},upperdir={upper},workdir={work}",
                              str(merged)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount an overlay here: {mounted.stderr.strip()}")
    try:
        with proc_mounted(merged, "the throwaway root"):
            yield merged
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=False)


def _chroot(root: Path, *argv: str, user: str | None = None,
            groups: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [shutil.which("chroot") or "/usr/sbin/chroot"]
    if user is not None:
        command.append(f"--userspec={user}")
    if groups is not None:
        command.append(f"--groups={groups}")
    return subprocess.run([*command, str(root), *argv], capture_output=True, text=True,
                          check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def _gid(root: Path, group: str) -> str | None:
    for line in (root / "etc" / "group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return fields[2]
    return None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_install_serve_and_uninstall_in_a_throwaway_root(
        binary: Path, throwaway_root: Path, home: Path, proxy: FaultProxy, aws: Aws,
        unique: str) -> None:
    root = throwaway_root
    package = root / "tmp" / "package"
    shutil.copytree(SERVICE, package / "service")
    unpack(binary, package / "daemon")
    port = free_port()
    (package / "agent.toml").write_text(f"http_port = {port}\nvalidate_credentials = true\n")
    installed = _chroot(root, "/tmp/package/service/install", "--from", "/tmp/package/daemon",
                        "--config", "/tmp/package/agent.toml")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "systemd is not running here" in installed.stdout
    for unit in UNITS:
        assert (root / "etc" / "systemd" / "system" / unit).exists()
    assert (root / "etc" / NAME / "config.toml").read_text().startswith(f"http_port = {port}")
    assert (root / "opt" / NAME / "extensions" / NAME).exists()
    gid = _gid(root, TOKEN_GROUP)
    assert gid is not None

    # A bad configuration is refused before anything changes.
    (package / "bad.toml").write_text("max_conn = 0\n")
    refused = _chroot(root, "/tmp/package/service/install", "--from", "/tmp/package/daemon",
                      "--config", "/tmp/package/bad.toml")
    assert refused.returncode != 0 and "max_conn = 0 is invalid" in refused.stdout

    # The token unit's command: a 64-hex-digit token, mode 0640, group-owned.
    seeded = _chroot(root, f"/opt/{NAME}/bin/{NAME}-token", "start")
    assert seeded.returncode == 0, seeded.stderr
    token_file = root / "run" / "awssmatoken"
    found = os.stat(token_file)
    assert oct(found.st_mode & 0o777) == "0o640" and str(found.st_gid) == gid
    token = token_file.read_text()
    assert len(token) == 64 and all(c in "0123456789abcdef" for c in token)
    outsider = _chroot(root, "cat", "/var/run/awssmatoken", user="65534:65534")
    assert outsider.returncode != 0 and token not in outsider.stdout
    member = _chroot(root, "cat", "/var/run/awssmatoken", user="65534:65534", groups=gid)
    assert member.stdout == token

    # The daemon as the unit runs it: an unprivileged user in the token group, the unit's
    # command line and environment, memory-deny-write-execute where the kernel has it.
    name = f"{unique}-installed"
    aws.sm.create_secret(Name=name, SecretString="installed-value")
    wrapper = [sys.executable, "-c", MDWE_WRAPPER] if _mdwe_supported() else []
    command = [*wrapper, shutil.which("chroot") or "/usr/sbin/chroot", "--userspec=65534:65534",
               f"--groups={gid}", str(root), f"/opt/{NAME}/extensions/{NAME}", "--config",
               f"/etc/{NAME}/config.toml"]
    env = clean_env(home, {"AWS_ENDPOINT_URL": proxy.url, "AWS_REGION": REGION, **FAKE_CREDS,
                           "AWS_TOKEN": "file:///var/run/awssmatoken",
                           "PYTHONDONTWRITEBYTECODE": "1"})
    daemon = Daemon.attach(Process(command, env), token, port)
    try:
        daemon.wait_ready(timeout=60)
        answer = requests.get(f"{daemon.base}/secretsmanager/get", params={"secretId": name},
                              headers={"X-Aws-Parameters-Secrets-Token": token}, timeout=10)
        assert answer.status_code == 200 and answer.json()["SecretString"] == "installed-value"
        assert "AWS credentials validated" in daemon.output
    finally:
        daemon.kill()
    assert "installed-value" not in daemon.output and token not in daemon.output

    removed = _chroot(root, "/tmp/package/service/uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (root / "opt" / NAME).exists() and not token_file.exists()
    for unit in UNITS:
        assert not (root / "etc" / "systemd" / "system" / unit).exists()
    assert _gid(root, TOKEN_GROUP) is None
    assert (root / "etc" / NAME / "config.toml").exists()  # kept, as the Agent keeps it
