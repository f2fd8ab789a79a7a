"""INIT added by the Lambda exec wrapper (issue 24), for scripts/bench-coldstart.

The unpacked layers under the fake Extensions API, a trivial standard-library runtime (it
starts and asks for its first invocation, which is when Lambda's INIT ends), three variants
interleaved: no wrapper, the wrapper with no reference in the environment (the shell's fast
path), and the wrapper resolving three references (a String, a SecureString and a secret) on a
cold cache, so one AWS round trip per group read. Unthrottled CPU: the wrapper runs inside INIT,
where Lambda gives the most CPU. ``measure(...)`` returns medians in ms; ``table(result)``
renders them.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from benchlib import free_port
from fake_extensions_api import FakeExtensionsApi

VARIANTS = ("no wrapper", "wrapper, no reference", "wrapper, 3 references")
REFERENCES = {"DB_HOST": "{{resolve:ssm:/bench/string}}",
              "DB_PASSWORD": "{{resolve:ssm-secure:/bench/secure}}",
              "API_SECRET": "{{resolve:secretsmanager:bench/secret}}"}
RUNTIME = ("import os, urllib.request\n"
           "urllib.request.urlopen('http://' + os.environ['AWS_LAMBDA_RUNTIME_API']"
           " + '/2018-06-01/runtime/invocation/next')\n")
TIMEOUT = 60.0


def one_run(launcher: Path, path: str, python: Path, runtime: Path, aws_url: str, bundle: str,
            variant: str) -> float:
    """Seconds from the extension's exec to the end of INIT."""
    api = FakeExtensionsApi(runtime_ready_at_start=False).start()
    env = {"PATH": path, "HOME": "/tmp", "LANG": "C.UTF-8", "AWS_LAMBDA_RUNTIME_API": api.address,
           "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_SESSION_TOKEN": "bench-token", "AWS_ENDPOINT_URL": aws_url,
           "AWS_CA_BUNDLE": bundle, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(free_port()),
           "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    extension = subprocess.Popen([str(launcher)], env=env, stdout=subprocess.DEVNULL,
                                 stdin=subprocess.DEVNULL)
    function: subprocess.Popen[bytes] | None = None
    try:
        if not api.registered.wait(TIMEOUT):
            raise RuntimeError("the extension never registered")
        argv = [str(python), "-s", str(runtime)]
        function_env = {**env, "PATH": f"{python.parent}:/usr/bin:/bin"}
        if variant != "no wrapper":
            argv = [str(launcher.parents[1] / "parameters-secrets-sidecar" / "exec-wrapper"),
                    *argv]
        if variant == "wrapper, 3 references":
            function_env.update(REFERENCES)
        function = subprocess.Popen(argv, env=function_env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL)
        if not api.init_ended.wait(TIMEOUT) or api.init_ended_at is None:
            raise RuntimeError(f"{variant}: INIT never ended")
        return api.init_ended_at - started
    finally:
        for process in (function, extension):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        api.stop()


def measure(launchers: dict[str, tuple[Path, str]], python: Path, aws_url: str, bundle: str,
            runs: int, work: Path) -> dict[str, dict[str, float]]:
    """INIT medians in ms per layer label and variant. ``launchers``: label -> (the layer's
    extension launcher, PATH for it)."""
    runtime = work / "wrapper-runtime.py"
    runtime.write_text(RUNTIME)
    samples: dict[tuple[str, str], list[float]] = {
        (label, variant): [] for label in launchers for variant in VARIANTS}
    for _ in range(runs):  # interleaved: every variant sees the same machine
        for (label, variant), found in samples.items():
            launcher, path = launchers[label]
            found.append(one_run(launcher, path, python, runtime, aws_url, bundle, variant))
    result: dict[str, dict[str, float]] = {}
    for (label, variant), found in samples.items():
        result.setdefault(label, {})[variant] = round(statistics.median(found) * 1000, 1)
    return result


def table(result: dict[str, dict[str, float]]) -> str:
    lines = ["| layer | runtime started | INIT | added by the wrapper |", "|---|---|---|---|"]
    for label, variants in result.items():
        base = variants["no wrapper"]
        for variant, init_ms in variants.items():
            lines.append(f"| {label} | {variant} | {init_ms} ms | {init_ms - base:+.1f} ms |")
    return "\n".join(lines)
