"""The distribution's declared requirements (field N7): each extra, installed at the floors it
declares into a fresh venv from PyPI, imports. ``[pydantic]`` used to allow pydantic-settings
2.0, while the code imports ``pydantic_settings.sources.utils`` (2.9 on)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import tomllib
from tests.support.process import REPO

CLIENT = REPO / "client"
# What each extra must make importable.
IMPORTS = {"pydantic": "sidecar_client.pydantic_sources"}


def floors() -> dict[str, list[tuple[str, str]]]:
    """Each extra's requirements as (distribution, floor); every one must have a ``>=`` floor."""
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    found: dict[str, list[tuple[str, str]]] = {}
    for extra, requirements in project["optional-dependencies"].items():
        for requirement in requirements:
            name, sep, version = requirement.partition(">=")
            assert sep and "," not in version and ";" not in version, \
                f"[{extra}] needs a plain '>=' floor: {requirement!r}"
            found.setdefault(extra, []).append((name.strip(), version.strip()))
    return found


def _release(version: str) -> tuple[int, ...]:
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _unreachable() -> str | None:
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/pip/", timeout=10):
            return None
    except (OSError, ValueError) as exc:
        shown = urllib.parse.urlsplit(index)._replace(netloc=urllib.parse.urlsplit(index)
                                                      .hostname or "").geturl()
        return f"the package index ({shown}) is unreachable: {type(exc).__name__}"


def test_every_extra_is_checked() -> None:
    assert set(floors()) == set(IMPORTS)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("extra", sorted(IMPORTS))
def test_extra_at_its_floors_imports(extra: str, tmp_path: Path) -> None:
    reason = _unreachable()
    if reason:
        pytest.skip(reason)
    source = tmp_path / "client"  # a copy: building writes build/ and *.egg-info beside it
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns(
        "tests", "build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    pins = floors()[extra]
    constraints = tmp_path / "floors.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins))
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--constraint", str(constraints),
         f"{source}[{extra}]"], capture_output=True, text=True, timeout=540, check=False)
    assert installed.returncode == 0, installed.stderr[-3000:]
    script = ("import importlib, importlib.metadata as m, sys\n"
              f"importlib.import_module({IMPORTS[extra]!r})\n"
              "for name in sys.argv[1:]: print(name, m.version(name))\n")
    done = subprocess.run([python, "-c", script, *(name for name, _ in pins)],
                          capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    versions = dict(line.split() for line in done.stdout.splitlines())
    for name, floor in pins:
        assert _release(versions[name]) == _release(floor), (name, versions[name], floor)
