"""INIT and memory of one process serving both ports (issue 25), beside the extension alone,
in the same run, interleaved: the figure the README's "AppConfig (port 2772)" section gives.

Each launcher runs in Lambda mode under the fake Extensions API (INIT ends when the extension
calls ``next``; the runtime is ready at once) with the policy a 512 MB function gets (INIT waits
for the start-up), three ways:

- ``alone``: ``PARAMETERS_SECRETS_EXTENSION_APPCONFIG=false``, the parameters port only;
- ``both``: the AppConfig port too (Lambda's default), nothing read from it;
- ``both, prefetch 1``: ``AWS_APPCONFIG_EXTENSION_PREFETCH_LIST`` of one configuration (INIT
  then waits for it), and a first read of it.

Measured: INIT (exec to INIT's end), exec to both ports accepting, and the resident memory of
the extension's processes after the first reads. AppConfig Data is scripts/fake_appconfig
over plain HTTP (``AWS_ENDPOINT_URL_APPCONFIGDATA``); nothing reaches AWS.

``measure(launchers, aws_url, bundle, runs)`` is what scripts/bench_coldstart.py calls;
``table(result)`` renders it. Alone: ``python scripts/coldstart_appconfig.py [--runs 7]``
(the source tree's ``python -m sidecar`` as the launcher).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from benchlib import free_port  # noqa: E402
from fake_appconfig import AppConfigFake  # noqa: E402
from fake_extensions_api import FakeExtensionsApi  # noqa: E402

VARIANTS = ("alone", "both", "both, prefetch 1")
CONFIG = ("bench-app", "prod", "flags")
PATH = "/applications/{}/environments/{}/configurations/{}".format(*CONFIG)
MEMORY_MB = "512"  # below one vCPU: INIT waits for the start-up (and the prefetch)
TIMEOUT = 60.0


def rss_kb(root: int) -> int:
    """Resident memory of ``root`` and its descendants (a launcher may run a child)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, grown = {root}, True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in family} - family
        family |= more
        grown = bool(more)
    total = 0
    for pid in family:
        try:
            with open(f"/proc/{pid}/status") as handle:
                total += int(next(line for line in handle if line.startswith("VmRSS")).split()[1])
        except (OSError, StopIteration):
            continue
    return total


def _accepting(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/ping", timeout=1)
        return True
    except requests.RequestException:
        return False


def one_run(launcher: list[str], path: str, variant: str, aws_url: str, bundle: str,
            appconfig_url: str) -> dict[str, float]:
    api = FakeExtensionsApi().start()
    port, appconfig_port = free_port(), free_port()
    env = {"PATH": path, "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
           "AWS_LAMBDA_RUNTIME_API": api.address, "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_SESSION_TOKEN": "bench",
           "AWS_ENDPOINT_URL": aws_url, "AWS_ENDPOINT_URL_APPCONFIGDATA": appconfig_url,
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": MEMORY_MB,
           "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port),
           "AWS_APPCONFIG_EXTENSION_HTTP_PORT": str(appconfig_port),
           "PARAMETERS_SECRETS_EXTENSION_APPCONFIG": "false" if variant == "alone" else "auto"}
    if bundle:
        env["AWS_CA_BUNDLE"] = bundle
    if variant.endswith("prefetch 1"):
        env["AWS_APPCONFIG_EXTENSION_PREFETCH_LIST"] = PATH
    started = time.monotonic()
    extension = subprocess.Popen(launcher, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        if not api.init_ended.wait(TIMEOUT) or api.init_ended_at is None:
            raise RuntimeError(f"{variant}: INIT never ended")
        ports = [port] if variant == "alone" else [port, appconfig_port]
        deadline = time.monotonic() + TIMEOUT
        while not all(_accepting(each) for each in ports):
            if time.monotonic() > deadline or extension.poll() is not None:
                raise RuntimeError(f"{variant}: the extension never served")
            time.sleep(0.002)
        result = {"init": api.init_ended_at - started, "serving": time.monotonic() - started}
        if variant.endswith("prefetch 1"):
            answer = requests.get(f"http://127.0.0.1:{appconfig_port}{PATH}", timeout=10)
            if answer.status_code != 200 or answer.headers.get("X-Cache") != "hit":
                raise RuntimeError(f"{variant}: the first read was not a hit: {answer.status_code}")
        result["rss_mb"] = rss_kb(extension.pid) / 1024
        api.shutdown()
        if extension.wait(10) != 0:
            raise RuntimeError(f"{variant}: the extension exited with {extension.returncode}")
        return result
    finally:
        if extension.poll() is None:
            extension.kill()
            extension.wait()
        api.stop()


def measure(launchers: dict[str, tuple[list[str], str]], aws_url: str, bundle: str,
            runs: int) -> dict[str, dict[str, dict[str, float]]]:
    """Medians per launcher label and variant: ``init`` and ``serving`` in ms, ``rss_mb``.
    ``launchers``: label -> (argv, PATH for it)."""
    fake = AppConfigFake()
    fake.deploy(*CONFIG, b'{"ui_refresh": {"enabled": true}}')
    samples: dict[tuple[str, str], list[dict[str, float]]] = {
        (label, variant): [] for label in launchers for variant in VARIANTS}
    for _ in range(runs):  # interleaved: every variant sees the same machine
        for (label, variant), found in samples.items():
            argv, path = launchers[label]
            found.append(one_run(argv, path, variant, aws_url, bundle, fake.url))
    result: dict[str, dict[str, dict[str, float]]] = {}
    for (label, variant), found in samples.items():
        result.setdefault(label, {})[variant] = {
            "init_ms": round(statistics.median(s["init"] for s in found) * 1000, 1),
            "serving_ms": round(statistics.median(s["serving"] for s in found) * 1000, 1),
            "rss_mb": round(statistics.median(s["rss_mb"] for s in found), 1)}
    return result


def table(result: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = ["| launcher | ports | INIT | exec to serving | RSS |", "|---|---|---|---|---|"]
    for label, variants in result.items():
        for variant, figures in variants.items():
            lines.append(f"| {label} | {variant} | {figures['init_ms']} ms | "
                         f"{figures['serving_ms']} ms | {figures['rss_mb']} MB |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    launchers = {"source tree": ([sys.executable, "-m", "sidecar"],
                                 os.environ.get("PATH", "/usr/bin:/bin"))}
    os.chdir(REPO)
    print(table(measure(launchers, "http://127.0.0.1:9", "", args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
