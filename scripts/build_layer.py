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
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from buildlib import BOTOCORE_SERVICES, NAME, REPO, REQUIREMENTS, log, write_zip

VERSIONS = ("3.11", "3.12", "3.13")
ARCHES = {"x86_64": "x86_64", "arm64": "aarch64"}
BUDGET_BYTES = 25 * 1024 * 1024
DROP_DIRS = {"tests", "test", "__pycache__"}
# The Debian package that brings a strip able to read each architecture's ELF files (binutils'
# own strip reads only the machine's; llvm-strip reads every architecture and is used if present).
STRIP_PACKAGES = {"x86_64": "binutils-x86-64-linux-gnu", "arm64": "binutils-aarch64-linux-gnu"}

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


def this_arch() -> str:
    return "arm64" if platform.machine() == "aarch64" else "x86_64"


def strip_tool(arch: str) -> str | None:
    """A strip that reads the target's ELF files: binutils' for the target, or the machine's
    own binutils strip for the machine's architecture, or llvm-strip (any architecture)."""
    for candidate in (f"{ARCHES[arch]}-linux-gnu-strip", "llvm-strip"):
        if shutil.which(candidate):
            return candidate
    if arch == this_arch() and shutil.which("strip"):
        return "strip"
    return None


def strip_advice(arch: str) -> str:
    package = "binutils" if arch == this_arch() else STRIP_PACKAGES[arch]
    return (f"{arch}: no strip for {arch} ELF files (install {package}): the layer's shared "
            "objects keep their symbols, a larger zip")


def missing_prerequisites(arches: list[str], versions: tuple[str, ...]) -> list[str]:
    """Everything the Python layer build would stop on, found before anything is downloaded:
    one line each, saying what to install or which flag to use."""
    problems = []
    unknown = [version for version in versions if version not in VERSIONS]
    if unknown or not versions:
        problems.append(f"--python-versions {','.join(versions) or '(empty)'}: the layer "
                        f"supports {', '.join(VERSIONS)}")
    present = available_versions()
    absent = [version for version in versions if version in VERSIONS and version not in present]
    if absent:
        flag = (f"or build for the ones this machine has: --python-versions {','.join(present)}"
                if present else "(CPython 3.11 or newer)")
        problems.append(
            f"no {', '.join('python' + version for version in absent)} on this machine (each "
            f"version compiles its own tree; a release layer carries {', '.join(VERSIONS)}): "
            f"install {'it' if len(absent) == 1 else 'them'} (pyenv, python.org builds) {flag}")
    if importlib.util.find_spec("pip") is None:
        problems.append(f"{sys.executable} has no pip: run scripts/build-layer, which makes "
                        ".venv with it")
    return problems


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
        return  # said once, before the build (strip_advice)
    for binary in tree.rglob("*.so"):
        done = subprocess.run([tool, "--strip-unneeded", str(binary)], check=False,
                              capture_output=True, text=True)
        if done.returncode != 0:
            log(f"{arch}: could not strip {binary.name}: {done.stderr.strip()[:200]}")


def copy_project(root: Path) -> None:
    shutil.copytree(REPO / "sidecar", root / "common" / "sidecar",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(REPO / "layer" / NAME / "bootstrap.py", root / "bootstrap.py")
    # The Lambda exec wrapper (AWS_LAMBDA_EXEC_WRAPPER): a shell script and its stdlib entry.
    for part in ("exec-wrapper", "envwrap.py"):
        shutil.copy2(REPO / "layer" / NAME / part, root / part)
    (root / "exec-wrapper").chmod(0o755)
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
        import build_binary

        here = this_arch()
        wanted = [here] if args.arch is None else list(ARCHES) if args.arch == "all" \
            else [args.arch]
        stop(build_binary.missing_prerequisites(wanted, here))
        for arch in wanted:
            if arch == here:
                build_binary.build(args.out.resolve(), args.work.resolve())
            else:
                build_binary.build_emulated_arm64(args.out.resolve())
        return 0
    versions = tuple(v.strip() for v in args.python_versions.split(",") if v.strip())
    arches = list(ARCHES) if args.arch in (None, "all") else [args.arch]
    stop(missing_prerequisites(arches, versions))
    for arch in arches:
        if strip_tool(arch) is None:
            log(strip_advice(arch))
    for arch in arches:
        build(arch, versions, args.out.resolve(), args.work.resolve())
    return 0


def stop(problems: list[str]) -> None:
    """Stop before any download when something is missing, one line per missing thing."""
    if problems:
        for problem in problems:
            print(f"build-layer: {problem}", file=sys.stderr, flush=True)
        raise SystemExit(2)


if __name__ == "__main__":
    sys.exit(main())
