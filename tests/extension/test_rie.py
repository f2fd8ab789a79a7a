"""The Python layer under AWS's own Lambda Runtime Interface Emulator, where one is installed
(``aws-lambda-rie`` on PATH, or ``AWS_LAMBDA_RIE=/path``; many Lambda users have it for
container testing). Skipped with the reason otherwise.

RIE runs every executable in ``/opt/extensions`` and the runtime command it is given; the
layer is bind-mounted over ``/opt`` in a private mount namespace, so the machine's own /opt is
never touched. The runtime is a trivial Runtime API loop whose handler reads one parameter
through the daemon, during an invoke.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import FAKE_CREDS, REGION, Aws
from tests.support.process import Process, clean_env, free_port
from tests.support.proxy import FaultProxy

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from build_layer import unpack

RUNTIME = r"""
import json, os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as event:
        request_id = event.headers["Lambda-Runtime-Aws-Request-Id"]
        name = json.loads(event.read())["name"]
    read = urllib.request.Request(
        "http://127.0.0.1:" + os.environ["PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"]
        + "/systemsmanager/parameters/get?name=" + name,
        headers={"X-Aws-Parameters-Secrets-Token": os.environ["AWS_SESSION_TOKEN"]})
    with urllib.request.urlopen(read, timeout=10) as answer:
        value = json.loads(answer.read())["Parameter"]["Value"]
    urllib.request.urlopen(urllib.request.Request(
        api + request_id + "/response", data=json.dumps(value).encode(), method="POST"))
"""


def _rie() -> str:
    found = os.environ.get("AWS_LAMBDA_RIE") or shutil.which("aws-lambda-rie")
    if not found:
        pytest.skip("no AWS Lambda Runtime Interface Emulator: install aws-lambda-rie on PATH "
                    "or set AWS_LAMBDA_RIE=/path to run the layer under it")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount the layer over /opt privately")
    return found


def test_python_layer_under_the_real_emulator(tmp_path_factory: pytest.TempPathFactory,
                                              home: Path, proxy: FaultProxy, aws: Aws,
                                              unique: str) -> None:
    rie = _rie()
    out = tmp_path_factory.mktemp("rie")
    subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "scripts"
                                        / "build_layer.py"), "--arch", "x86_64",
                    "--python-versions", f"{sys.version_info[0]}.{sys.version_info[1]}",
                    "--out", str(out), "--work", str(out / "work")], check=True)
    opt = unpack(out / "parameters-secrets-sidecar-x86_64.zip", out / "opt")
    (out / "runtime.py").write_text(RUNTIME)
    name = f"/{unique}/rie"
    aws.ssm.put_parameter(Name=name, Type="String", Value="through RIE")
    port, daemon_port = free_port(), free_port()
    env = clean_env(home, {
        "AWS_ENDPOINT_URL": proxy.url, "AWS_REGION": REGION, "AWS_SESSION_TOKEN": "rie-token",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(daemon_port), **FAKE_CREDS})
    mount = shutil.which("mount") or "/bin/mount"
    argv = [shutil.which("unshare") or "unshare", "--mount", "/bin/sh", "-c",
            f'{mount} --bind {opt} /opt && exec "$0" "$@"', rie,
            "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
            sys.executable, str(out / "runtime.py")]
    emulator = Process(argv, env)
    try:
        url = f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
        deadline = time.monotonic() + 60
        while True:
            try:
                request = urllib.request.Request(url, data=json.dumps({"name": name}).encode())
                with urllib.request.urlopen(request, timeout=30) as answer:
                    assert json.loads(answer.read()) == "through RIE"
                break
            except OSError:
                assert time.monotonic() < deadline, emulator.output[-3000:]
                time.sleep(0.2)
        assert "parameters-secrets-sidecar" in emulator.output
    finally:
        emulator.kill()
