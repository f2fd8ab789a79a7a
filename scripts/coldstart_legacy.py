"""The earlier cold-start figures, kept for scripts/bench's report: the unpacked layer under the
fake Extensions API with a trivial function, unthrottled, no memory size (so INIT ends at
register), median of N runs. scripts/bench_coldstart.py measures what users feel instead.

For each run, from the exec of the layer's launcher:
- register: the register call reaches the Extensions API;
- listening: the port accepts a connection;
- first 200: a read of a parameter from (fake) AWS answers 200;
- first hit after prefetch (a second set of runs, with 100 prefetched parameters): the prefetch
  has finished and a read of a prefetched parameter is a hit.
"""

from __future__ import annotations

import http.client
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from build_layer import bare_python, unpack  # noqa: E402
from fake_extensions_api import FakeExtensionsApi  # noqa: E402

LAUNCHER = "extensions/parameters-secrets-sidecar"
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bare_python_or_exit(version: str, where: Path) -> Path:
    found = bare_python(version, where)
    if found is None:
        raise SystemExit(f"bench-coldstart: no CPython {version} here (try --python 3.11)")
    return found


def start_fake_aws(parameters: int) -> str:
    import logging

    import botocore.session
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    ssm: Any = botocore.session.get_session().create_client(
        "ssm", region_name="us-east-1", endpoint_url=url, aws_access_key_id="x",
        aws_secret_access_key="x")
    for index in range(parameters):
        ssm.put_parameter(Name=f"/bench/p{index}", Type="String", Value="v" * 300,
                          Overwrite=True)  # moto keeps state per process, across servers
    return url


def get(port: int, path: str, timeout: float = 30) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"X-Aws-Parameters-Secrets-Token": TOKEN})
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


class Output:
    """The child's stdout, with the arrival time of each line."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for raw in stream:
            self.lines.append((time.monotonic(), raw.decode("utf-8", "replace")))

    def wait_for(self, needle: str, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if needle in line:
                    return at
            time.sleep(0.001)
        raise RuntimeError(f"{needle!r} never appeared:\n" + "".join(x for _, x in self.lines))


# A trivial function's runtime: start, then say INIT is done (``invocation/next``).
RUNTIME = ("import os, urllib.request; urllib.request.urlopen('http://' + "
           "os.environ['AWS_LAMBDA_RUNTIME_API'] + '/2018-06-01/runtime/invocation/next')")


def start_runtime(api: FakeExtensionsApi) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-S", "-c", RUNTIME],
                            env={"AWS_LAMBDA_RUNTIME_API": api.address, "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def runtime_only_run() -> float:
    """INIT of the trivial function with no extension: until its runtime says it is ready."""
    api = FakeExtensionsApi(runtime_ready_at_start=False).start()
    started = time.monotonic()
    runtime = start_runtime(api)
    try:
        deadline = time.monotonic() + 30
        while api.runtime_ready_at is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the runtime never called invocation/next")
            time.sleep(0.0005)
        return api.runtime_ready_at - started
    finally:
        runtime.kill()
        runtime.wait()
        api.stop()


def one_run(launcher: Path, bin_dir: Path, aws_url: str, prefetch: str) -> dict[str, float]:
    port = free_port()
    api = FakeExtensionsApi(runtime_ready_at_start=False).start()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": tempfile.gettempdir(),
        "AWS_LAMBDA_RUNTIME_API": api.address, "AWS_ENDPOINT_URL": aws_url,
        "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_TOKEN": TOKEN, "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if prefetch:
        env["PARAMETERS_SECRETS_EXTENSION_PREFETCH"] = prefetch
    started = time.monotonic()
    process = subprocess.Popen([str(launcher)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    runtime = start_runtime(api)
    output = Output(process.stdout)
    result: dict[str, float] = {}
    try:
        if not api.init_ended.wait(30):
            raise RuntimeError("INIT never ended")
        assert api.init_ended_at is not None
        result["init"] = api.init_ended_at - started
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.0005)
        result["listening"] = time.monotonic() - started
        if prefetch:
            done = output.wait_for("prefetch done")
            status, headers = get(port, "/systemsmanager/parameters/get?name=/bench/p0")
            assert status == 200 and headers["x-cache"] == "hit", (status, headers)
            result["prefetch_done"] = done - started
            result["first_hit"] = time.monotonic() - started
        else:
            status, _ = get(port, "/systemsmanager/parameters/get?name=/bench/p0")
            assert status == 200, status
            result["first_200"] = time.monotonic() - started
        api.registered.wait(10)
        result["register"] = api.registrations[0].at - started
        api.shutdown()
        process.wait(10)
        assert process.returncode == 0, "".join(line for _, line in output.lines)
    finally:
        if process.poll() is None:
            process.kill()
        runtime.kill()
        runtime.wait()
        api.stop()
    return result


def measure(layer: Path, version: str, runs: int) -> dict[str, Any]:
    """Medians for ``layer``: the Python layer under a bare ``version``, or the binary layer
    (no Python at all on PATH)."""
    with tempfile.TemporaryDirectory() as tmp:
        opt = unpack(layer, Path(tmp) / "opt")
        binary = not (opt / "parameters-secrets-sidecar" / "bootstrap.py").exists()
        bin_dir = Path(tmp) / "empty" if binary else bare_python_or_exit(version, Path(tmp))
        bin_dir.mkdir(exist_ok=True)
        aws_url = start_fake_aws(100)
        prefetch = ",".join(f"ssm:/bench/p{index}" for index in range(100))
        plain: list[dict[str, float]] = []
        alone: list[float] = []
        for _ in range(runs):  # interleaved, so both see the same machine
            alone.append(runtime_only_run())
            plain.append(one_run(opt / LAUNCHER, bin_dir, aws_url, ""))
        warm = [one_run(opt / LAUNCHER, bin_dir, aws_url, prefetch) for _ in range(runs)]

    def median_ms(samples: list[dict[str, float]], field: str) -> float:
        return round(statistics.median(s[field] for s in samples) * 1000, 1)

    return {
        "python": "none (binary)" if binary else version, "runs": runs, "layer": layer.name,
        "layer_mb": round(layer.stat().st_size / 1024 / 1024, 1),
        "init_without_extension_ms": round(statistics.median(alone) * 1000, 1),
        "init_with_extension_ms": median_ms(plain, "init"),
        "init_added_ms": round((statistics.median(s["init"] for s in plain)
                                - statistics.median(alone)) * 1000, 1),
        "exec_to_register_ms": median_ms(plain, "register"),
        "exec_to_listening_ms": median_ms(plain, "listening"),
        "exec_to_first_200_ms": median_ms(plain, "first_200"),
        "exec_to_prefetch_done_ms": median_ms(warm, "prefetch_done"),
        "exec_to_first_hit_after_prefetch_ms": median_ms(warm, "first_hit"),
    }


def table(result: dict[str, Any]) -> str:
    rows = [("INIT of a trivial function, no extension", "init_without_extension_ms"),
            ("INIT of the same function with the layer", "init_with_extension_ms"),
            ("**INIT added by the extension**", "init_added_ms"),
            ("exec → register", "exec_to_register_ms"),
            ("exec → listening", "exec_to_listening_ms"),
            ("exec → first 200 (a miss fetched from AWS)", "exec_to_first_200_ms"),
            ("exec → prefetch of 100 parameters done", "exec_to_prefetch_done_ms"),
            ("exec → first hit after prefetch", "exec_to_first_hit_after_prefetch_ms")]
    lines = [f"Cold start, {result['layer']} ({result['layer_mb']} MB), Python: "
             f"{result['python']}, median of {result['runs']}", "",
             "| measure | ms |", "|---|---|"]
    lines += [f"| {label} | {result[key]} |" for label, key in rows]
    return "\n".join(lines)
