"""Start-up CPU of the extension beside what its libraries cost to import, in the same run.

For each layer, unthrottled, under the fake Extensions API (``INIT_MODE=early``, no prefetch,
so that nothing waits): the extension's user plus system CPU (``/proc/<pid>/stat``, all threads)
at register, when ``/ping`` first answers (serving) and when the first read of a parameter
(fetched from the fake AWS, over HTTPS) answers. Beside it, with the same interpreter and the
layer's own packages: the CPU of a process that only starts Python (``python -s -c pass``) and
of one that imports aiohttp (and aiohttp.web), aiobotocore (session and config), cachetools and
uvloop, from exec to its ``os._exit`` (``wait4``, no teardown). The gap is serving's CPU over
the libraries' import.

What the binary's loader costs before Python runs: the CPU of ``--version`` (the daemon's entry
point, argparse, exit) run as the binary, less the same run by the Python layer's code on a bare
Python (each process's own CPU from ``wait4``, exact to the microsecond).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

from coldstart_sandbox import cpu_secs
from fake_extensions_api import FakeExtensionsApi

TOKEN = "bench-token"
LIBRARIES = ("aiohttp", "aiohttp.web", "aiobotocore.session", "aiobotocore.config", "cachetools",
             "uvloop")


class LayerLike(Protocol):
    @property
    def label(self) -> str: ...
    @property
    def launcher(self) -> Path: ...
    @property
    def path(self) -> str: ...


def _python_cpu(python: Path, code: str, tree: Path | None) -> float:
    prefix = ""
    if tree is not None:
        tag = subprocess.run([str(python), "-c", "import sys; print(f'cp{sys.version_info[0]}"
                              "{sys.version_info[1]}')"], capture_output=True, text=True,
                             check=True).stdout.strip()
        prefix = f"import sys; sys.path[:0] = [{str(tree / tag)!r}, {str(tree / 'common')!r}]; "
    # os._exit: the interpreter's teardown (tens of ms with all these modules) is no import.
    return _whole_cpu([str(python), "-s", "-c", prefix + code + "; import os; os._exit(0)"],
                      {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})


def _whole_cpu(argv: list[str], env: dict[str, str]) -> float:
    """CPU of a whole run, exit included (``wait4``: exact, where /proc's ticks are 10 ms)."""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{argv} exited with {process.returncode}")
    return usage.ru_utime + usage.ru_stime


def _get(port: int, path: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
                conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             f"X-Aws-Parameters-Secrets-Token: {TOKEN}\r\n\r\n".encode())
                head = conn.recv(64)
                return int(head.split()[1]) if head.startswith(b"HTTP/1.1") else 0
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def _extension_run(layer: LayerLike, aws_url: str, bundle: Path) -> dict[str, float]:
    api = FakeExtensionsApi().start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"PATH": layer.path, "HOME": "/tmp", "LANG": "C.UTF-8",
           "AWS_LAMBDA_RUNTIME_API": api.address, "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_SESSION_TOKEN": TOKEN,
           "AWS_ENDPOINT_URL": aws_url, "AWS_CA_BUNDLE": str(bundle),
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
           "PARAMETERS_SECRETS_EXTENSION_INIT_MODE": "early",
           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port)}
    at_register: list[float] = []
    pids: list[int] = []
    api.on_register = lambda: at_register.append(cpu_secs(pids[0]))
    started = time.monotonic()
    process = subprocess.Popen([str(layer.launcher)], env=env, stdout=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL)
    pids.append(process.pid)
    try:
        result = {}
        while _get(port, "/ping") != 200:
            time.sleep(0.001)
        result["serving_wall"] = time.monotonic() - started
        result["serving"] = cpu_secs(process.pid)
        assert _get(port, "/systemsmanager/parameters/get?name=/bench/string") == 200
        result["first_value"] = cpu_secs(process.pid)
        result["register"] = at_register[0] if at_register else float("nan")
        result["register_wall"] = api.registrations[0].at - started
        api.shutdown()
        process.wait(10)
        return result
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        api.stop()


def measure(layers: dict[str, Any], python_bin: Path, aws_url: str, bundle: Path,
            runs: int) -> dict[str, Any]:
    """Medians in ms, for each layer; the libraries' import for the Python layer's tree."""
    python = python_bin / "python3"
    found: dict[str, Any] = {}
    for label, layer in layers.items():
        samples: list[dict[str, float]] = []
        for _ in range(max(runs, 5) * 2):  # 10 ms ticks: more runs than the cold starts
            sample = _extension_run(layer, aws_url, bundle)
            plain = {"PATH": layer.path, "LANG": "C.UTF-8"}
            if label == "Python layer":
                tree = layer.launcher.parents[1] / "parameters-secrets-sidecar"
                sample["python_alone"] = _python_cpu(python, "pass", None)
                sample["libraries"] = _python_cpu(python, "import " + ", ".join(LIBRARIES), tree)
                sample["version"] = _whole_cpu([str(python), "-s", "-c", (
                    f"import sys; sys.path[:0] = [{str(tree / 'common')!r}]; "
                    "from sidecar.__main__ import main; sys.exit(main(['--version']))")], plain)
            else:
                sample["version"] = _whole_cpu([str(layer.launcher), "--version"], plain)
            samples.append(sample)
        found[label] = {key: round(statistics.median(s[key] for s in samples) * 1000, 1)
                        for key in samples[0]}
    return found
