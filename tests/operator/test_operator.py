"""The service install as an operator meets it (field finding N15): the units need a systemd
recent enough to know every directive they use, the install refuses an older one (which would
ignore ``DynamicUser=`` and the sandbox and run the daemon as root), and ``uninstall --purge``
leaves the machine as it was before the install.

The install runs in a throwaway Debian root (an overlay on the bullseye tree the binary tests
build), with a stand-in ``systemctl`` that reports a version, as an installed systemd would.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.operator.test_service import throwaway_root  # noqa: F401  (the overlay fixture)
from tests.support.process import REPO

NAME = "parameters-secrets-sidecar"
SERVICE = REPO / "service"

# The systemd release that introduced each directive the units use (systemd's NEWS and the
# systemd.exec/systemd.service man pages); older ones are far below any of these.
SINCE = {
    "ProtectProc": 247, "ProcSubset": 247, "ProtectClock": 245, "ProtectKernelLogs": 244,
    "ProtectHostname": 242, "RestrictSUIDSGID": 242, "Type=exec": 240, "DynamicUser": 235,
    "LogsDirectory": 235, "LockPersonality": 235, "RestrictNamespaces": 233,
    "ProtectKernelModules": 232, "ProtectKernelTunables": 232, "ProtectControlGroups": 232,
    "ProtectSystem=strict": 232, "MemoryDenyWriteExecute": 231, "RestrictRealtime": 231,
    "SystemCallFilter=@system-service": 231, "AmbientCapabilities": 229, "ProtectHome": 214,
    "RestrictAddressFamilies": 211, "SystemCallArchitectures": 209, "SystemCallErrorNumber": 209,
    "NoNewPrivileges": 187, "PrivateDevices": 183, "PrivateNetwork": 33, "PrivateTmp": 1,
    "CapabilityBoundingSet": 1, "SupplementaryGroups": 1, "UMask": 1, "LimitCORE": 1,
    "LimitNOFILE": 1, "Type=oneshot": 1, "RemainAfterExit": 1, "Restart": 1, "RestartSec": 1,
    "TimeoutStopSec": 1, "ExecStart": 1, "ExecStop": 1, "Environment": 1, "Description": 1,
    "After": 1, "Before": 1, "Wants": 1, "Requires": 1, "WantedBy": 1,
}


def directives() -> set[str]:
    """Every directive of both units, with the value where the value is what is new."""
    found = set()
    for unit in SERVICE.glob("*.service"):
        for line in unit.read_text().splitlines():
            if "=" in line and not line.startswith(("#", "[")):
                key, value = line.split("=", 1)
                found.add(f"{key}={value}" if f"{key}={value}" in SINCE else key)
    return found


def test_the_install_asks_for_the_systemd_the_units_need() -> None:
    used = directives()
    unknown = sorted(d for d in used if d not in SINCE)
    assert not unknown, f"add to SINCE the systemd version that introduced {unknown}"
    needed = max(SINCE[d] for d in used)
    declared = re.search(r"^MIN_SYSTEMD=(\d+)$", (SERVICE / "install").read_text(), re.MULTILINE)
    assert declared and int(declared.group(1)) == needed == 247
    assert f"systemd {needed} or newer" in (REPO / "README.md").read_text()


def fake_systemd(root: Path, version: int) -> None:
    """What an installed (not running) systemd leaves that the scripts look at."""
    systemctl = root / "usr" / "bin" / "systemctl"
    systemctl.write_text(f'#!/bin/sh\n[ "$1" = --version ] && echo "systemd {version} '
                         f'({version}.1-1)" && echo "+PAM +AUDIT" && exit 0\nexit 1\n')
    systemctl.chmod(0o755)
    (root / "etc" / "systemd" / "system").mkdir(parents=True, exist_ok=True)
    (root / "var" / "log" / "private").mkdir(mode=0o700, parents=True, exist_ok=True)


def fake_daemon_tree(root: Path) -> Path:
    package = root / "tmp" / "package"
    shutil.copytree(SERVICE, package / "service")
    launcher = package / "daemon" / "extensions" / NAME
    launcher.parent.mkdir(parents=True)
    launcher.write_text("#!/bin/sh\necho daemon\n")
    launcher.chmod(0o755)
    return package


def chroot(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shutil.which("chroot") or "/usr/sbin/chroot", str(root), *argv],
                          capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def changes(upper: Path) -> dict[str, str]:
    """What the overlay's upper layer holds beyond copied-up folders: each path's kind."""
    found = {}
    for path in sorted(upper.rglob("*")):
        relative = str(path.relative_to(upper))
        if relative == "tmp" or relative.startswith(("tmp/", "proc")):
            continue
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            continue
        found[relative] = ("whiteout" if stat.S_ISCHR(mode) else
                           "link" if stat.S_ISLNK(mode) else "file")
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_older_systemd_is_refused_with_nothing_changed(throwaway_root: Path) -> None:  # noqa: F811
    root = throwaway_root
    fake_systemd(root, 219)  # Amazon Linux 2's
    package = fake_daemon_tree(root)
    upper = root.parent / "upper"
    before = changes(upper)
    refused = chroot(root, "/tmp/package/service/install", "--from", "/tmp/package/daemon")
    assert refused.returncode == 1, refused
    assert refused.stderr.startswith("install: systemd 219 is older than 247, which the units "
                                     "need"), refused.stderr
    assert "stopped:" not in refused.stderr
    assert changes(upper) == before
    assert package.exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_uninstall_purge_leaves_the_machine_as_it_was(throwaway_root: Path) -> None:  # noqa: F811
    root = throwaway_root
    fake_systemd(root, 252)  # Amazon Linux 2023's
    fake_daemon_tree(root)
    shutil.rmtree(root / "opt" / NAME, ignore_errors=True)  # the binary tests' copy, if any
    upper = root.parent / "upper"
    groups = {name: (root / "etc" / name).read_bytes() for name in ("group", "gshadow")
              if (root / "etc" / name).exists()}
    before = changes(upper)
    installed = chroot(root, "/tmp/package/service/install", "--from", "/tmp/package/daemon")
    assert installed.returncode == 0, installed
    assert "systemd is not running here: the units are installed" in installed.stdout
    # What the service itself makes while it runs: the token, the logs (LogsDirectory= with
    # DynamicUser=: a private folder and a link to it).
    (root / "run" / "awssmatoken").write_text("t" * 64)
    logs = root / "var" / "log" / "private" / NAME
    logs.mkdir()
    (logs / f"{NAME}.log").write_text("a line\n")
    (root / "var" / "log" / NAME).symlink_to(f"private/{NAME}")
    (root / "etc" / "systemd" / "system" / "multi-user.target.wants").mkdir()
    for unit in (f"{NAME}.service", f"{NAME}-token.service"):  # as `systemctl enable` links
        (root / "etc" / "systemd" / "system" / "multi-user.target.wants" / unit).symlink_to(
            f"/etc/systemd/system/{unit}")

    kept = chroot(root, "/tmp/package/service/uninstall")
    assert kept.returncode == 0, kept
    assert (root / "etc" / NAME / "config.toml").exists() and (logs / f"{NAME}.log").exists()
    purged = chroot(root, "/tmp/package/service/uninstall", "--purge")
    assert purged.returncode == 0, purged
    assert "its configuration and its logs" in purged.stdout

    left = {path: kind for path, kind in changes(upper).items() if path not in before}
    # groupadd and groupdel rewrite the group files (keeping a backup, under their lock file):
    # the same content.
    for name, content in groups.items():
        assert (root / "etc" / name).read_bytes() == content
        left.pop(f"etc/{name}", None)
        left.pop(f"etc/{name}-", None)
    left.pop("etc/.pwd.lock", None)
    assert not left, f"left behind: {left}"
    for folder in ("etc/systemd/system/multi-user.target.wants",):
        assert not os.listdir(root / folder)
