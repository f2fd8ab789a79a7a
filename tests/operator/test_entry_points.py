"""Every entry point hands its command line to the daemon (field finding N1), and the health
check reads the same configuration as the daemon it checks (N8).

The entry points: ``python -m sidecar``, the Python layer's launcher and ``bootstrap.py``, the
binary layer's launcher, the container's ``ENTRYPOINT`` and the service unit's ``ExecStart``.
Each runs ``--version``, ``--help`` and ``--check-config`` (a good file and a bad one), with
``AWS_TOKEN`` set so that a dropped argument would start a daemon instead (the hang of N1).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar import __version__
from tests.conftest import FAKE_CREDS, REGION
from tests.operator.test_dockerfile import parse
from tests.support.process import REPO, Daemon, Process, clean_env, free_port
from tests.support.proxy import FaultProxy

sys.path.insert(0, str(REPO / "scripts"))
from build_layer import copy_project, unpack

NAME = "parameters-secrets-sidecar"
UNIT = REPO / "service" / f"{NAME}.service"
GOOD = "http_port = 2999\nvalidate_credentials = false\n"
BAD = "max_conn = 0\n"


def python_layer_tree(where: Path) -> Path:
    """The Python layer's files as the build lays them out (its own copy step), with a compiled
    tree for this interpreter; its launcher finds this Python as ``python3`` on PATH (with this
    venv's packages standing in for the layer's trees)."""
    root = where / "opt" / NAME
    root.mkdir(parents=True)
    copy_project(root)
    (root / f"cp{sys.version_info[0]}{sys.version_info[1]}").mkdir()
    bin_dir = where / "bin"
    bin_dir.mkdir()
    # The launcher runs Python with -S (no site-packages): the venv's stand in for the layer's
    # trees through PYTHONPATH, after the launcher's own entry.
    packages = sysconfig.get_paths()["purelib"]
    (bin_dir / "python3").write_text('#!/bin/sh\nPYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}'
                                     f'{packages}" exec {sys.executable} "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    return where / "opt"


@pytest.fixture(scope="module")
def python_opt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return python_layer_tree(tmp_path_factory.mktemp("python-layer"))


def _env(home: Path, opt: Path | None = None, **extra: str) -> dict[str, str]:
    path = f"{opt.parent / 'bin'}:/usr/bin:/bin" if opt is not None else "/usr/bin:/bin"
    env = clean_env(home, {"PATH": path, "AWS_TOKEN": "would-start-a-daemon",
                           "AWS_REGION": REGION, **FAKE_CREDS, **extra})
    env.pop("PYTHONPATH", None)
    return env


def check_command_line(argv: list[str], env: dict[str, str], tmp_path: Path) -> None:
    """``argv`` + each flag reaches the daemon's argument parser, and nothing starts."""
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(GOOD)
    bad.write_text(BAD)

    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*argv, *flags], env=env, capture_output=True, text=True,
                              timeout=60, check=False, cwd=tmp_path)

    version = run("--version")
    assert (version.returncode, version.stdout.strip()) == (0, __version__), version
    helped = run("--help")
    assert helped.returncode == 0 and "usage: parameters-secrets-sidecar" in helped.stdout
    assert "--check-config" in helped.stdout and "--config" in helped.stdout
    valid = run("--check-config", str(good))
    assert valid.returncode == 0 and f"{good}: valid" in valid.stdout, valid
    invalid = run("--check-config", str(bad))
    assert invalid.returncode == 2 and "max_conn = 0 is invalid" in invalid.stdout, invalid
    assert "no auth token" not in invalid.stdout + valid.stdout


def test_python_module(tmp_path: Path, home: Path) -> None:
    check_command_line([sys.executable, "-m", "sidecar"], _env(home), tmp_path)


def test_python_layer_launcher(python_opt: Path, tmp_path: Path, home: Path) -> None:
    check_command_line([str(python_opt / "extensions" / NAME)], _env(home, python_opt),
                       tmp_path)


def test_python_layer_bootstrap(python_opt: Path, tmp_path: Path, home: Path) -> None:
    """bootstrap.py on its own (what the launcher execs) takes its own arguments too."""
    env = _env(home, python_opt, PYTHONPATH=str(python_opt / NAME))
    check_command_line([sys.executable, "-s", str(python_opt / NAME / "bootstrap.py")], env,
                       tmp_path)


@pytest.fixture(scope="module")
def binary_opt(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack(binary, tmp_path_factory.mktemp("binary-opt"))


def test_binary_layer_launcher(binary_opt: Path, tmp_path: Path, home: Path) -> None:
    env = _env(home, PATH="/nonexistent")  # no Python, no tools: the bundle alone
    check_command_line([str(binary_opt / "extensions" / NAME)], env, tmp_path)


def dockerfile_entrypoint() -> list[str]:
    """The final stage's ENTRYPOINT (an exec-form JSON array), as docker runs it."""
    final = parse((REPO / "Dockerfile").read_text())[-1]
    found = [json.loads(arguments) for kind, arguments in final.instructions
             if kind == "ENTRYPOINT"]
    assert found, "the Dockerfile has no ENTRYPOINT"
    assert not [kind for kind, _ in final.instructions if kind == "CMD"], \
        "a CMD would be prepended to the container's arguments"
    return list(found[-1])


def test_container_entrypoint(binary_opt: Path, tmp_path: Path, home: Path) -> None:
    """The image's tree is the binary layer's (its ``COPY --from=builder`` puts it in /opt)."""
    argv = dockerfile_entrypoint()
    assert argv[0].startswith("/opt/")
    argv[0] = str(binary_opt / argv[0].removeprefix("/opt/"))
    check_command_line(argv, _env(home, PATH="/nonexistent"), tmp_path)


def unit_exec_start() -> list[str]:
    text = UNIT.read_text()
    [line] = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def unit_environment() -> dict[str, str]:
    pairs = [line.removeprefix("Environment=").split("=", 1)
             for line in UNIT.read_text().splitlines() if line.startswith("Environment=")]
    return dict((name, value) for name, value in pairs)


def run_unit_command(opt: Path, home: Path, proxy: FaultProxy, tmp_path: Path,
                     path: str) -> None:
    """The unit's ExecStart, from ``opt`` instead of /opt/parameters-secrets-sidecar, with its
    --config file in a temporary folder: the daemon listens on the file's port, so the file
    reached it through the launcher."""
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f"http_port = {port}\nvalidate_credentials = false\n")
    token_file = tmp_path / "token"
    token_file.write_text("unit-token")
    argv = [arg.replace(f"/opt/{NAME}/", f"{opt}/")
               .replace(f"/etc/{NAME}/config.toml", str(config)) for arg in unit_exec_start()]
    assert "--config" in argv and str(config) in argv
    env = {name: value.replace("/var/run/awssmatoken", str(token_file))
           for name, value in unit_environment().items()}
    daemon = Daemon.attach(Process(argv, clean_env(home, {
        "PATH": path, "AWS_ENDPOINT_URL": proxy.url, "AWS_REGION": REGION, **FAKE_CREDS,
        **env})), "unit-token", port)
    try:
        daemon.wait_ready(timeout=60)
        assert f"config_file={config}" in daemon.output
    finally:
        daemon.kill()


def test_service_unit_from_the_python_layer(python_opt: Path, home: Path, proxy: FaultProxy,
                                            tmp_path: Path) -> None:
    run_unit_command(python_opt, home, proxy, tmp_path, f"{python_opt.parent / 'bin'}:/usr/bin")


def test_service_unit_from_the_binary_layer(binary_opt: Path, home: Path, proxy: FaultProxy,
                                            tmp_path: Path) -> None:
    run_unit_command(binary_opt, home, proxy, tmp_path, "/nonexistent")


# --- N8: the health check reads the daemon's configuration ---------------------------------

@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The binary layer's launcher over a stand-in bundle: the "loader" runs this Python's
    ``-m sidecar`` with the launcher's arguments, after saying that it was started."""
    where = tmp_path_factory.mktemp("launcher")
    internal = where / NAME / "_internal"
    internal.mkdir(parents=True)
    (internal / "fake-loader").write_text(
        f'#!/bin/sh\necho "bundle started"\nshift 3\nexec {sys.executable} -m sidecar "$@"\n')
    (internal / "fake-loader").chmod(0o755)
    (where / "extensions").mkdir()
    script = where / "extensions" / NAME
    script.write_text((REPO / "layer" / "binary-launcher").read_text()
                      .replace("@LOADER@", "fake-loader"))
    script.chmod(0o755)
    return script


def health_cases(port: int) -> Iterator[tuple[str, str, dict[str, str], bool]]:
    """(name, file, environment, fast): the launcher answers ``fast`` cases by itself."""
    yield "flat", f"http_port = {port}\n", {}, True
    yield "flat string", f'log_level = "info"\nhttp_port = "{port}"  # a comment\n', {}, True
    yield "nested", (f"[logging]\nlog_level = \"info\"\n[capabilities.secrets_manager]\n"
                     f"http_port = {port}\n"), {}, True
    yield "no port in the file", "cache_size = 10\n", \
        {"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port)}, True
    yield "the variable wins", "http_port = 2\n", \
        {"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": f" {port} "}, True
    yield "dotted key", f"[capabilities]\nsecrets_manager.http_port = {port}\n", {}, False


@pytest.mark.parametrize("case", range(6))
def test_health_check_reads_the_daemons_configuration(
        case: int, launcher: Path, home: Path, proxy: FaultProxy, tmp_path: Path) -> None:
    port = free_port()
    name, text, variables, fast = list(health_cases(port))[case]
    config = tmp_path / "agent.toml"
    config.write_text(text + ("validate_credentials = false\n" if "[" not in text else ""))
    env = clean_env(home, {"AWS_ENDPOINT_URL": proxy.url, "AWS_REGION": REGION,
                           "AWS_TOKEN": "t", **FAKE_CREDS, **variables})
    daemon = Daemon(env, "t", port, ["--config", str(config)]).wait_ready()
    try:
        checks = {
            "python": [sys.executable, "-m", "sidecar", "--healthcheck", "--config", str(config)],
            "launcher": [str(launcher), "--healthcheck", "--config", str(config)],
            "launcher, --config=": [str(launcher), "--healthcheck", f"--config={config}"],
        }
        for how, argv in checks.items():
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30,
                                  check=False)
            assert (done.returncode, done.stdout.splitlines()[-1]) == (0, "healthy"), \
                (name, how, done.stdout, done.stderr)
            if how.startswith("launcher"):
                assert ("bundle started" not in done.stdout) == fast, (name, how, done.stdout)
        # Another port than the daemon's: unhealthy, whichever path answers.
        other = {**env, "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(free_port())}
        for argv in checks.values():
            done = subprocess.run(argv, env=other, capture_output=True, text=True, timeout=30,
                                  check=False)
            assert (done.returncode, done.stdout.splitlines()[-1]) == (1, "unhealthy"), \
                (name, argv, done.stdout)
    finally:
        daemon.kill()


def test_health_check_needs_no_token_and_refuses_a_bad_file(launcher: Path, home: Path,
                                                            tmp_path: Path) -> None:
    """An operator's shell has no token: the port alone matters. A file the daemon would refuse
    means no daemon runs with it: unhealthy, with the reason on stderr."""
    bad = tmp_path / "bad.toml"
    bad.write_text("http_port = 0\n")
    env = clean_env(home, {})
    for argv in ([sys.executable, "-m", "sidecar", "--healthcheck", "--config", str(bad)],
                 [str(launcher), "--healthcheck", "--config", str(bad)]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30,
                              check=False)
        assert done.returncode == 1 and done.stdout.splitlines()[-1] == "unhealthy"
        assert "http_port = 0 is invalid" in done.stderr
    port = free_port()
    good = tmp_path / "good.toml"
    good.write_text(f'ssrf_env_variables = ["MY_TOKEN"]\nhttp_port = {port}\n')
    done = subprocess.run([sys.executable, "-m", "sidecar", "--healthcheck", "--config",
                           str(good)], env=env, capture_output=True, text=True, timeout=30,
                          check=False)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (1, "unhealthy", "")
