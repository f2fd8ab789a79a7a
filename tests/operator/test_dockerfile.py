"""What the Dockerfile builds, a test builds (field finding N2), with no Docker engine: exactly
the files the ``builder`` stage copies (``.dockerignore`` applied) go into an empty folder, and
the stage's build commands run there. A file the build reads that the Dockerfile forgets to
copy fails here, as it would in ``docker build``. The package install step (``dnf``, Amazon
Linux's) is the one command not run: this machine's own packages stand in for it. hadolint
lints the Dockerfile in scripts/test.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.process import REPO

sys.path.insert(0, str(REPO / "scripts"))
from build_layer import available_versions

NAME = "parameters-secrets-sidecar"


@dataclass
class Stage:
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> list[Stage]:
    """Stages of instructions (keyword, arguments); continuations joined, comments dropped."""
    stages: list[Stage] = []
    logical, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        logical.append(pending.strip())
        pending = ""
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        if keyword.upper() == "FROM":
            words = arguments.split()
            stages.append(Stage(words[-1] if len(words) >= 3 and words[-2].upper() == "AS"
                                else str(len(stages))))
        else:
            stages[-1].instructions.append((keyword.upper(), arguments.strip()))
    return stages


def ignored(relative: str, patterns: list[str]) -> bool:
    """``.dockerignore``'s rule: a path goes when it, or a folder above it, matches."""
    parts = relative.split("/")
    for depth in range(1, len(parts) + 1):
        candidate = "/".join(parts[:depth])
        for pattern in patterns:
            if fnmatch.fnmatchcase(candidate, pattern) or (
                    pattern.startswith("**/")
                    and fnmatch.fnmatchcase(candidate, pattern[3:])):
                return True
    return False


def copy_context(source: str, destination: Path, patterns: list[str]) -> None:
    """``COPY source destination`` from the build context (the repository)."""
    path = REPO / source
    assert path.exists(), f"COPY {source}: not in the build context"
    if path.is_file():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)
        return
    for item in sorted(path.rglob("*")):
        relative = str(item.relative_to(REPO))
        if item.is_file() and not ignored(relative, patterns):
            target = destination / item.relative_to(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item, target)


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines
            if line.strip() and not line.startswith("#")]


def test_dockerfile_stages_are_the_documented_ones() -> None:
    names = [stage.name for stage in parse((REPO / "Dockerfile").read_text())]
    assert names == ["builder", "artifacts", "sidecar"]


def test_the_image_sets_no_daemon_setting() -> None:
    """No ENV in the Dockerfile that the daemon reads: a variable the image sets would silently
    win over a --config file's key (the image once set the port this way)."""
    text = (REPO / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM "):]
    names = [line.split()[1].split("=", 1)[0] for line in final.splitlines()
             if line.startswith("ENV ")]
    read = {name for name in names
            if any(name in path.read_text() for path in (REPO / "sidecar").rglob("*.py"))}
    assert not read, f"the image sets {sorted(read)}, which override the configuration file"


def test_dockerignore_rules() -> None:
    patterns = dockerignore()
    assert ignored("sidecar/__pycache__/x.pyc", patterns)
    assert ignored(".venv/bin/python", patterns)
    assert not ignored("sidecar/__main__.py", patterns)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_builder_stage_builds_from_the_files_it_copies(tmp_path: Path) -> None:
    stages = {stage.name: stage for stage in parse((REPO / "Dockerfile").read_text())}
    builder = stages["builder"]
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    present = available_versions()
    if not present:
        pytest.skip("no CPython 3.11+ to build the layer with")
    # The build's own Python; Debian's python3.11 package stands for Amazon Linux's here.
    binary_python = dict(item.split("=", 1) for kind, item in builder.instructions
                         if kind == "ENV")["BINARY_BUILD_PYTHON"]
    if not Path(binary_python).exists() or not shutil.which("objdump"):
        pytest.skip(f"the binary build needs {binary_python} and binutils' objdump "
                    "(Debian: python3.11, binutils; scripts/test-deps installs binutils)")
    # The paths the stage makes (its WORKDIR and venvs) live under tmp_path instead of /.
    made: dict[str, str] = {}
    workdir = tmp_path
    patterns = dockerignore()
    skipped = []
    for kind, arguments in builder.instructions:
        if kind == "ARG":
            key, _, default = arguments.partition("=")
            # As `docker build --build-arg PYTHON_VERSIONS=...` would: what this machine has.
            env[key] = ",".join(present[:1]) if key == "PYTHON_VERSIONS" else default
        elif kind == "ENV":
            key, _, value = arguments.partition("=")
            env[key] = value
        elif kind == "WORKDIR":
            workdir = tmp_path / arguments.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
            made[arguments] = str(workdir)
        elif kind == "COPY":
            *sources, destination = arguments.split()
            assert not [s for s in sources if s.startswith("--")], arguments
            target = workdir / destination
            for source in sources:
                copy_context(source, target / Path(source).name
                             if destination.endswith("/") or len(sources) > 1 else target,
                             patterns)
        elif kind == "RUN":
            if arguments.startswith("dnf "):
                skipped.append(arguments)
                continue
            for venv in re.findall(r"-m venv (/\S+)", arguments):
                made[venv] = str(tmp_path / venv.lstrip("/"))
            command = arguments
            for path, local in sorted(made.items(), key=lambda item: -len(item[0])):
                command = re.sub(rf"(?<![\w/]){re.escape(path)}(?=/|\s|$)", local, command)
            ran = subprocess.run(["sh", "-c", command], cwd=workdir, env=env, check=False,
                                 capture_output=True, text=True)
            assert ran.returncode == 0, (
                f"RUN {arguments}\nfailed in the copied files:\n{ran.stdout[-3000:]}"
                f"\n{ran.stderr[-3000:]}")
        else:
            raise AssertionError(f"unexpected {kind} in the builder stage: extend this test")
    assert len(skipped) == 1, "only the package install step is skipped"

    # What the later stages take from the builder exists, with what they run.
    src = Path(made["/src"])
    for stage in (stages["artifacts"], stages["sidecar"]):
        for kind, arguments in stage.instructions:
            if kind == "COPY" and arguments.startswith("--from=builder"):
                source = arguments.split()[1]
                assert (src / Path(source).relative_to("/src")).is_dir(), arguments
    zips = sorted(path.name for path in (src / "dist").glob("*.zip"))
    assert zips == sorted([f"{NAME}-x86_64.zip", f"{NAME}-arm64.zip",
                           f"{NAME}-binary-x86_64.zip"]), zips
    opt = src / "dist" / f"{NAME}-binary"
    entrypoint = next(json.loads(arguments) for kind, arguments
                      in stages["sidecar"].instructions if kind == "ENTRYPOINT")
    launcher = opt / Path(entrypoint[0]).relative_to("/opt")
    version = subprocess.run([str(launcher), "--version"], capture_output=True, text=True,
                             check=False, env={"PATH": "/nonexistent"}, timeout=60)
    assert version.returncode == 0 and version.stdout.strip(), version
