"""Session fixtures that build things once: the binary layer and a Debian bullseye tree (an
older glibc, and a throwaway root for the service install test)."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process import REPO

NAME = "parameters-secrets-sidecar"
ROOTFS_CACHE = Path.home() / ".cache" / NAME / "rootfs-bullseye"


@pytest.fixture(scope="session")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if platform.machine() != "x86_64":
        pytest.skip("the binary is built for x86_64 only")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("building the binary needs Debian's /usr/bin/python3")
    missing = [package for package, present in (
        ("binutils", shutil.which("objdump") is not None),
        ("libpython3.11", bool(list(Path("/usr/lib").glob("*/libpython3*.so.1*")))),
    ) if not present]
    if missing:
        pytest.skip("building the binary needs the Debian packages " + ", ".join(missing)
                    + " (scripts/test-deps installs them as root)")
    out = tmp_path_factory.mktemp("binary")
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_layer.py"), "--binary",
                    "--out", str(out), "--work", str(REPO / "build")], check=True)
    return out / f"{NAME}-binary-x86_64.zip"


def _apt_mirror() -> list[str]:
    """The Debian mirror this machine's apt uses (none: debootstrap's own default)."""
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.sources")]
    for source in sources:
        text = source.read_text() if source.exists() else ""
        found = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.MULTILINE) or \
            re.search(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+/debian)\s", text, re.MULTILINE)
        if found:
            return [found.group(1)]
    return []


@pytest.fixture(scope="session")
def old_rootfs() -> Iterator[Path]:
    """A Debian bullseye (glibc 2.31) minbase tree with /proc mounted; built once per machine."""
    if os.geteuid() != 0:
        pytest.skip("building and entering a chroot needs root")
    if not (ROOTFS_CACHE / ".complete").exists():
        if os.environ.get("SIDECAR_TEST_NO_ROOTFS"):
            pytest.skip(f"SIDECAR_TEST_NO_ROOTFS is set: no bullseye tree built at {ROOTFS_CACHE}")
        if not shutil.which("debootstrap"):
            pytest.skip("the Debian package debootstrap is missing "
                        "(scripts/test-deps installs it as root)")
        print(f"building a Debian bullseye tree (~230 MB) at {ROOTFS_CACHE}, once per machine; "
              "SIDECAR_TEST_NO_ROOTFS=1 skips it")
        shutil.rmtree(ROOTFS_CACHE, ignore_errors=True)
        ROOTFS_CACHE.parent.mkdir(parents=True, exist_ok=True)
        built = subprocess.run(["debootstrap", "--variant=minbase", "bullseye",
                                str(ROOTFS_CACHE), *_apt_mirror()],
                               capture_output=True, text=True, check=False)
        if built.returncode != 0:
            pytest.skip("could not build a bullseye tree (no network to Debian's packages?): "
                        + built.stdout[-300:])
        (ROOTFS_CACHE / ".complete").touch()
    with proc_mounted(ROOTFS_CACHE, "the chroot"):
        yield ROOTFS_CACHE


@contextlib.contextmanager
def proc_mounted(root: Path, what: str) -> Iterator[Path]:
    """``root`` with /proc mounted for the time of the block (the test skips if it cannot be)."""
    proc = root / "proc"
    mounted = subprocess.run(["mount", "-t", "proc", "proc", str(proc)],
                             capture_output=True, check=False).returncode == 0
    if not mounted:
        pytest.skip(f"cannot mount /proc in {what}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(proc)], check=False)
