"""Cold starts as users feel them: INIT plus the first invoke, under Lambda's CPU model.

The unpacked layers run under the fake Extensions API, which (like Lambda) starts the function's
runtime once the extension has registered, ends INIT when both have called ``next``, and then
delivers the first invoke. The sandbox (runtime and extension; never the fake AWS) runs in a
cgroup with a CPU quota (scripts/coldstart_sandbox.py), in two models:

- ``init-unthrottled`` (what public measurements of Lambda show): no quota during INIT, the
  memory's share of a vCPU (one at 1,769 MB) from the end of INIT on;
- ``throttled`` (pessimistic): the memory's share throughout.

The fake AWS speaks HTTPS (a self-signed certificate, in a bundle the size of botocore's), as
AWS does, so both sides pay for TLS as they would in Lambda. Functions:

- ``boto3``, no extension: boto3 imported and its two clients made at module level (in INIT),
  the handler reads a String, a SecureString and a secret with them;
- with a layer: the same three reads through the extension (standard library HTTP), the three
  prefetched (``PARAMETERS_SECRETS_EXTENSION_PREFETCH``), with the default INIT policy
  (``auto``) and with the other choice (``early`` or ``wait``), to show what the policy wins;
- a function that reads nothing on its first invoke (standard library only), with and without
  the extension: the difference is the INIT the extension adds;
- warm invokes: five more invokes reading the same three values, after the first.

Medians of ``--runs`` runs, interleaved. Then the start-up CPU (scripts/coldstart_cpu.py), and
INIT and memory with the AppConfig port beside (scripts/coldstart_appconfig.py;
``--skip-appconfig`` leaves it out), and the INIT the exec wrapper adds
(scripts/coldstart_wrapper.py; ``--skip-wrapper``).

Usage: scripts/bench-coldstart [--runs 5] [--python 3.12] [--sizes 128,512,1769]
       [--models init-unthrottled,throttled] [--layer ZIP ...] [--skip-appconfig] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import coldstart_appconfig  # noqa: E402
import coldstart_cpu  # noqa: E402
import coldstart_report  # noqa: E402
import coldstart_wrapper  # noqa: E402
from benchlib import FakeAwsThread  # noqa: E402
from build_layer import bare_python, unpack  # noqa: E402
from coldstart_legacy import measure as measure  # noqa: E402  (scripts/bench's earlier figures)
from coldstart_sandbox import (  # noqa: E402
    FUNCTION,
    PREFETCH,
    CpuModel,
    boto3_tree,
    cpu_secs,
    make_tls,
    share,
)
from fake_extensions_api import FakeExtensionsApi  # noqa: E402

from sidecar.config.settings import load  # noqa: E402
from sidecar.extension import policy  # noqa: E402

LAUNCHER = "extensions/parameters-secrets-sidecar"
TOKEN = "bench-token"
WARM_INVOKES = 5
TIMEOUT = 60.0


class Layer(NamedTuple):
    label: str  # "Python layer", "binary layer", or "binary layer (CPython 3.x)" beside others
    launcher: Path
    path: str  # PATH for the extension: a bare Python, or none at all for the binary


class Case(NamedTuple):
    model: str
    memory: int
    layer: str  # "none", or a Layer's label
    reads: bool
    mode: str  # "auto", "early", "wait" ("" without a layer)


class Context(NamedTuple):
    cpu: CpuModel
    python: Path
    boto3: Path
    aws_url: str
    bundle: Path
    function: Path
    layers: dict[str, Layer]


def auto_waits(memory: int) -> bool:
    """What the default policy picks for an on-demand function of ``memory`` MB."""
    settings, _ = load({"AWS_TOKEN": "x"})
    return policy.plan(settings, {policy.MEMORY_VARIABLE: str(memory)}).wait


def cases(models: list[str], sizes: list[int], layers: list[str]) -> list[Case]:
    found: list[Case] = []
    for model in models:
        for memory in sizes:
            found += [Case(model, memory, "none", True, ""), Case(model, memory, "none", False, "")]
            other = "early" if auto_waits(memory) else "wait"
            for layer in layers:
                for reads in (True, False):
                    found += [Case(model, memory, layer, reads, mode) for mode in ("auto", other)]
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(condition: Any, what: str, processes: list[subprocess.Popen[bytes]],
         timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout} s")
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{what}: {process.args!r} exited with "
                                   f"{process.returncode}")
        time.sleep(0.002)


def base_env(ctx: Context, api: FakeExtensionsApi, case: Case, port: int) -> dict[str, str]:
    """What Lambda gives every process of the sandbox (credentials as variables)."""
    return {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
            "AWS_LAMBDA_RUNTIME_API": api.address, "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_SESSION_TOKEN": TOKEN,
            "AWS_ENDPOINT_URL": ctx.aws_url, "AWS_CA_BUNDLE": str(ctx.bundle),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(case.memory),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port),
            "PYTHONDONTWRITEBYTECODE": "1"}


def one_run(case: Case, ctx: Context) -> dict[str, float]:
    """One cold start and the invokes after it; times in seconds."""
    vcpus = share(case.memory)
    unthrottled_init = case.model == "init-unthrottled"
    api = FakeExtensionsApi(runtime_ready_at_start=False, with_extension=case.layer != "none")
    processes: list[subprocess.Popen[bytes]] = []
    cpu_at_init_end: list[float] = []

    def init_ended() -> None:
        if unthrottled_init:
            ctx.cpu.limit(vcpus)
        cpu_at_init_end.append(sum(cpu_secs(process.pid) for process in processes))

    api.on_init_end = init_ended
    ctx.cpu.limit(None if unthrottled_init else vcpus)
    api.start()
    port = free_port()
    env = base_env(ctx, api, case, port)
    extension: subprocess.Popen[bytes] | None = None
    try:
        if case.layer != "none":
            layer = ctx.layers[case.layer]
            ext_env = {**env, "PATH": layer.path, "PARAMETERS_SECRETS_EXTENSION_INIT_MODE":
                       case.mode, "PARAMETERS_SECRETS_EXTENSION_PREFETCH":
                       PREFETCH if case.reads else ""}
            extension = ctx.cpu.held([str(layer.launcher)], ext_env)
            processes.append(extension)
        # The baseline that reads uses boto3; one that reads nothing is the same function with
        # and without the extension (so the difference is the INIT the extension adds).
        boto3 = case.layer == "none" and case.reads
        function_env = {**env, "BENCH_FUNCTION": "boto3" if boto3 else "sidecar",
                        "PYTHONPATH": str(ctx.boto3) if boto3 else ""}
        runtime = ctx.cpu.held([str(ctx.python), "-s", str(ctx.function)], function_env)
        processes.append(runtime)
        # Both wait in the sandbox already (held before their exec): INIT starts now.
        started = time.monotonic()
        if extension is not None:
            ctx.cpu.release(extension)
            wait(api.registered.is_set, "the extension never registered", processes)
        ctx.cpu.release(runtime)  # Lambda starts the runtime once the extensions registered
        api.invoke_function({"read": case.reads}, extension=case.layer != "none")
        wait(lambda: len(api.responses) >= 1, "no answer to the first invoke", processes)
        assert api.init_ended_at is not None
        result = {"init": api.init_ended_at - started,
                  "first": api.responses[0][1] - api.init_ended_at}
        result["sum"] = result["init"] + result["first"]
        if not ctx.cpu.kind:  # no quota: estimate the throttled phases from their CPU
            cpu_end = sum(cpu_secs(process.pid) for process in processes)
            if not unthrottled_init:
                result["init"] = max(result["init"], cpu_at_init_end[0] / vcpus)
            result["first"] = max(result["first"], (cpu_end - cpu_at_init_end[0]) / vcpus)
            result["sum"] = result["init"] + result["first"]
        if case.reads:
            warm = []
            for index in range(WARM_INVOKES):
                asked = time.monotonic()
                api.invoke_function({"read": True}, extension=case.layer != "none")
                wait(lambda n=index: len(api.responses) >= n + 2, "no answer to a warm invoke",
                     processes)
                warm.append(api.responses[-1][1] - asked)
            result["warm"] = statistics.median(warm)
        if extension is not None:
            api.shutdown()
            if extension.wait(10) != 0:
                raise RuntimeError(f"the extension exited with {extension.returncode}")
        return result
    finally:
        ctx.cpu.kill_all()
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        api.stop()


def prepare_layer(zip_path: Path, where: Path, python_bin: Path) -> Layer:
    opt = unpack(zip_path, where)
    binary = not (opt / "parameters-secrets-sidecar" / "bootstrap.py").exists()
    if binary:
        built = sorted((opt / "parameters-secrets-sidecar").rglob("libpython3*.so*"))
        version = built[0].name[len("libpython"):].split(".so")[0] if built else "?"
        return Layer(f"binary layer (CPython {version})", opt / LAUNCHER, "/nonexistent")
    return Layer("Python layer", opt / LAUNCHER, f"{python_bin}:/usr/bin:/bin")


def measure_felt(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    python_bin = bare_python(args.python, tmp)
    if python_bin is None:
        raise SystemExit(f"bench-coldstart: no CPython {args.python} here (try --python 3.11)")
    layers: dict[str, Layer] = {}
    for index, zip_path in enumerate(args.layer):
        if not zip_path.exists():
            raise SystemExit(f"bench-coldstart: no layer at {zip_path} (scripts/build-layer)")
        layer = prepare_layer(zip_path, tmp / f"opt{index}", python_bin)
        layers[layer.label] = layer
    if sum(label.startswith("binary") for label in layers) == 1:  # no need to say which
        layers = {("binary layer" if label.startswith("binary") else label): layer._replace(
            label="binary layer" if label.startswith("binary") else label)
            for label, layer in layers.items()}
    server_tls, bundle = make_tls(tmp)
    aws = FakeAwsThread(tls=server_tls)
    function = tmp / "function.py"
    function.write_text(FUNCTION)
    cpu = CpuModel()
    if args.priority:
        cpu.prioritise(args.priority)
    ctx = Context(cpu, python_bin / "python3", boto3_tree(python_bin / "python3"), aws.url,
                  bundle, function, layers)
    todo = cases(args.models, args.sizes, list(layers))
    samples: dict[Case, list[dict[str, float]]] = {case: [] for case in todo}
    try:
        for run in range(args.runs):  # interleaved: every case sees the same machine
            for case in todo:
                samples[case].append(one_run(case, ctx))
            print(f"bench-coldstart: run {run + 1} of {args.runs} done", file=sys.stderr)
        startup = coldstart_cpu.measure(layers, python_bin, aws.url, bundle, args.runs)
    finally:
        cpu.close()
    appconfig: Any = None
    if not args.skip_appconfig:
        try:
            appconfig = coldstart_appconfig.measure(
                {label: ([str(layer.launcher)], layer.path) for label, layer in layers.items()},
                aws.url, str(bundle), args.runs)
        except Exception as exc:  # a later section: never lose the figures above to it
            appconfig = f"not measured: {type(exc).__name__}: {exc}"
    wrapper: Any = None
    if not args.skip_wrapper:
        try:
            wrapper = coldstart_wrapper.measure(
                {label: (layer.launcher, layer.path) for label, layer in layers.items()},
                python_bin / "python3", aws.url, str(bundle), args.runs, tmp)
        except Exception as exc:  # a later section: never lose the figures above to it
            wrapper = f"not measured: {type(exc).__name__}: {exc}"
    medians = [{**case._asdict(), **{field: round(statistics.median(s[field] for s in runs) * 1000,
                                                  1) for field in runs[0]}}
               for case, runs in samples.items()]
    return {"python": args.python, "runs": args.runs, "cpu_model": cpu.kind or "estimated",
            "priority": args.priority,
            "cpu_note": cpu.note, "layers": {k: str(v.launcher.parents[1]) for k, v in
                                              layers.items()},
            "auto_waits": {str(m): auto_waits(m) for m in args.sizes},
            "cases": medians, "startup_cpu": startup, "appconfig": appconfig,
            "wrapper": wrapper}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-coldstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", default="3.12")
    parser.add_argument("--sizes", default="128,512,1769",
                        type=lambda raw: [int(x) for x in raw.split(",")])
    parser.add_argument("--models", default="init-unthrottled,throttled",
                        type=lambda raw: raw.split(","))
    parser.add_argument("--layer", type=Path, action="append", help="a layer zip (repeatable); "
                        "default: dist/'s Python layer, and its binary layer where built")
    parser.add_argument("--priority", type=int, default=0, metavar="N",
                        help="on a shared machine: weigh the sandbox and the fake AWS as N "
                             "ordinary processes each (cgroup cpu.shares/cpu.weight), so that "
                             "other load disturbs the figures less; 0 (default): as one")
    parser.add_argument("--skip-wrapper", action="store_true",
                        help="leave out the INIT the exec wrapper adds (issue 24)")
    parser.add_argument("--skip-appconfig", action="store_true",
                        help="leave out the AppConfig port's INIT and memory")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    if not args.layer:
        dist = REPO / "dist"
        python_layer = dist / "parameters-secrets-sidecar-x86_64.zip"
        if not python_layer.exists():
            subprocess.run([sys.executable, str(REPO / "scripts" / "build_layer.py"),
                            "--arch", "x86_64"], check=True)
        args.layer = [python_layer]
        binary = dist / "parameters-secrets-sidecar-binary-x86_64.zip"
        if binary.exists():
            args.layer.append(binary)
    with tempfile.TemporaryDirectory() as tmp:
        result = measure_felt(args, Path(tmp))
    print(json.dumps(result, indent=2) if args.json else coldstart_report.tables(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
