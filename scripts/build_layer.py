"""Build the Lambda layer zips: ``dist/parameters-secrets-sidecar-<arch>.zip``.

For each CPython minor version the layer supports, the pinned dependencies are installed from
manylinux wheels for the target architecture. Packages identical across versions (pure Python)
go to one ``common`` tree; the rest (C speedups) stay in one tree per version, which the layer's
bootstrap picks at start. botocore keeps only the service data it needs, tests are dropped, and
``.pyc`` files are compiled by each target Python with unchecked-hash invalidation (a timestamp
pyc goes stale in a zip, and /opt is read-only, so it could never be rewritten).

Run it as ``scripts/build-layer`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = "parameters-secrets-sidecar"
VERSIONS = ("3.11", "3.12", "3.13")
ARCHES = {"x86_64": "x86_64", "arm64": "aarch64"}
REQUIREMENTS = ("aiohttp", "aiobotocore", "cachetools", "uvloop")
BOTOCORE_SERVICES = {"ssm", "secretsmanager", "sts", "s3"}
BUDGET_BYTES = 25 * 1024 * 1024
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
DROP_DIRS = {"tests", "test", "__pycache__"}


def log(message: str) -> None:
    print(f"build-layer: {message}", flush=True)


def interpreters(version: str) -> list[str]:
    """Places a CPython ``version`` may be: PATH, pyenv's versions, Lambda's /var/lang."""
    found = [shutil.which(f"python{version}") or ""]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found += [str(p) for p in sorted(pyenv_root.glob(f"versions/{version}*/bin/python{version}"))]
    found += [f"/var/lang/bin/python{version}", f"/usr/bin/python{version}"]
    return [candidate for candidate in found if candidate and os.access(candidate, os.X_OK)]


def bare_python(version: str, where: Path) -> Path | None:
    """The bin directory of a venv of CPython ``version`` with nothing installed in it (so the
    project and its dependencies are not importable), or None where there is no such Python."""
    for interpreter in interpreters(version):
        venv = where / f"bare{version}"
        made = subprocess.run([interpreter, "-m", "venv", "--without-pip", str(venv)],
                              capture_output=True, check=False)
        if made.returncode == 0:
            return venv / "bin"
    return None


def unpack(layer: Path, where: Path) -> Path:
    """Unzip ``layer`` as Lambda does, keeping the executable bits."""
    with zipfile.ZipFile(layer) as archive:
        for info in archive.infolist():
            archive.extract(info, where)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                (where / info.filename).chmod(mode)
    return where


def available_versions() -> tuple[str, ...]:
    """The supported CPython versions this machine has an interpreter for."""
    return tuple(version for version in VERSIONS if _working_interpreter(version))


def _working_interpreter(version: str) -> str | None:
    for found in interpreters(version):
        check = subprocess.run([found, "-c", "import sys; print(sys.version[:4])"],
                               capture_output=True, text=True, check=False)
        if check.returncode == 0 and check.stdout.strip().startswith(version):
            return found
    return None


def python_for(version: str) -> str:
    """An interpreter of ``version`` to compile .pyc files with."""
    found = _working_interpreter(version)
    if found:
        return found
    raise SystemExit(f"build-layer: python{version} is needed to compile its .pyc files; "
                     f"install it or leave {version} out with --python-versions")


def pip_install(target: Path, arch: str, version: str) -> None:
    platform = ARCHES[arch]
    abi = "cp" + version.replace(".", "")
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(target), "--no-compile", "--only-binary=:all:",
        "--implementation", "cp", "--python-version", version, "--abi", abi,
        "--platform", f"manylinux2014_{platform}", "--platform", f"manylinux_2_17_{platform}",
        "-c", str(REPO / "constraints.txt"), *REQUIREMENTS,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)
        raise SystemExit(f"build-layer: pip could not install the {arch} wheels for {version}")


def tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    paths = sorted(path.rglob("*")) if path.is_dir() else [path]
    for item in paths:
        if item.is_file():
            digest.update(str(item.relative_to(path.parent)).encode())
            digest.update(item.read_bytes())
    return digest.hexdigest()


def split_common(stages: dict[str, Path], common: Path) -> None:
    """Move what is byte-identical in every version's tree to ``common``.

    With a single version nothing is shared: its tree keeps everything, so that the layer's
    bootstrap finds the ``cpXY`` tree it looks for (compiled packages included)."""
    if len(stages) < 2:
        return
    first = next(iter(stages.values()))
    for entry in sorted(first.iterdir()):
        others = [stage / entry.name for stage in stages.values()]
        if all(other.exists() for other in others) and \
                len({tree_digest(other) for other in others}) == 1:
            shutil.move(str(entry), str(common / entry.name))
            for other in others[1:]:
                shutil.rmtree(other) if other.is_dir() else other.unlink()


def strip_tool(arch: str) -> str | None:
    """A strip that reads the target's ELF files (llvm-strip reads every architecture)."""
    for candidate in ("llvm-strip", f"{ARCHES[arch]}-linux-gnu-strip"):
        if shutil.which(candidate):
            return candidate
    if arch == "x86_64" and shutil.which("strip"):
        return "strip"
    return None


def trim(tree: Path, arch: str) -> None:
    """Drop tests, caches, C sources, debug symbols, and botocore's data for unused services."""
    for path in sorted(tree.rglob("*"), reverse=True):
        if path.is_dir() and path.name in DROP_DIRS:
            shutil.rmtree(path)
    data = tree / "botocore" / "data"
    if data.is_dir():
        for service in data.iterdir():
            if service.is_dir() and service.name not in BOTOCORE_SERVICES:
                shutil.rmtree(service)
    for pattern in ("*.pyx", "*.pxd", "*.c", "*.h"):
        for source in tree.rglob(pattern):
            source.unlink()
    tool = strip_tool(arch)
    if tool is None:
        log(f"{arch}: no strip for this architecture (install llvm); shared objects keep symbols")
        return
    for binary in tree.rglob("*.so"):
        done = subprocess.run([tool, "--strip-unneeded", str(binary)], check=False,
                              capture_output=True, text=True)
        if done.returncode != 0:
            log(f"{arch}: could not strip {binary.name}: {done.stderr.strip()[:200]}")


def copy_project(root: Path) -> None:
    shutil.copytree(REPO / "sidecar", root / "common" / "sidecar",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(REPO / "layer" / NAME / "bootstrap.py", root / "bootstrap.py")
    extensions = root.parent / "extensions"
    extensions.mkdir()
    launcher = extensions / NAME
    shutil.copy2(REPO / "layer" / "extensions" / NAME, launcher)
    launcher.chmod(0o755)
    # The Python client, where Lambda puts /opt/python on a Python function's sys.path: the
    # function imports it with no pip. Source only (it supports 3.9+, older than our trees).
    shutil.copytree(REPO / "client" / "sidecar_client", root.parent / "python" / "sidecar_client",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def compile_trees(root: Path, versions: tuple[str, ...]) -> None:
    for version in versions:
        interpreter = python_for(version)
        tag = "cp" + version.replace(".", "")
        for tree in (root / "common", root / tag):
            subprocess.run([interpreter, "-m", "compileall", "-q", "-j", "0",
                            "--invalidation-mode", "unchecked-hash", str(tree)], check=True)


def write_zip(source: Path, destination: Path) -> int:
    """A reproducible zip: sorted entries, fixed timestamps, exec bits kept."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(source.rglob("*")):
            if path.is_dir():
                continue
            info = zipfile.ZipInfo(str(path.relative_to(source)), ZIP_DATE)
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    return destination.stat().st_size


def build(arch: str, versions: tuple[str, ...], out: Path, work: Path) -> Path:
    staging = work / f"layer-{arch}"
    if staging.exists():
        shutil.rmtree(staging)
    root = staging / "opt" / NAME
    stages = {}
    for version in versions:
        stage = staging / "stages" / version
        log(f"{arch}: installing wheels for Python {version}")
        pip_install(stage, arch, version)
        trim(stage, arch)
        stages[version] = stage
    (root / "common").mkdir(parents=True)
    split_common(stages, root / "common")
    for version, stage in stages.items():
        shutil.move(str(stage), str(root / ("cp" + version.replace(".", ""))))
    copy_project(root)
    log(f"{arch}: compiling .pyc files")
    compile_trees(root, versions)
    destination = out / f"{NAME}-{arch}.zip"
    size = write_zip(staging / "opt", destination)
    log(f"{destination.relative_to(REPO) if destination.is_relative_to(REPO) else destination}: "
        f"{size / 1024 / 1024:.1f} MB zipped (budget {BUDGET_BYTES // 1024 // 1024} MB)")
    if size > BUDGET_BYTES:
        raise SystemExit(f"build-layer: {destination.name} is over the size budget")
    return destination


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/build-layer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=[*ARCHES, "all"], default=None,
                        help="default: all for the Python layer, this machine's for --binary")
    parser.add_argument("--python-versions", default=",".join(VERSIONS),
                        help="comma-separated CPython minor versions (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--work", type=Path, default=REPO / "build")
    parser.add_argument("--binary", action="store_true",
                        help="build the self-contained binary layer instead, for this machine's "
                             "architecture, or with --arch arm64 on x86_64 under emulation")
    args = parser.parse_args(argv)
    if args.binary:
        import platform

        from build_binary import build as build_binary
        from build_binary import build_emulated_arm64

        here = "arm64" if platform.machine() == "aarch64" else "x86_64"
        wanted = [here] if args.arch is None else list(ARCHES) if args.arch == "all" \
            else [args.arch]
        for arch in wanted:
            if arch == here:
                build_binary(args.out.resolve(), args.work.resolve())
            elif arch == "arm64":
                build_emulated_arm64(args.out.resolve())
            else:
                raise SystemExit("build-layer: build the x86_64 binary on an x86_64 machine")
        return 0
    versions = tuple(v.strip() for v in args.python_versions.split(",") if v.strip())
    arches = list(ARCHES) if args.arch in (None, "all") else [args.arch]
    for arch in arches:
        build(arch, versions, args.out.resolve(), args.work.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
