"""The pieces of scripts/bench-coldstart's emulated Lambda sandbox: Lambda's CPU model as a cgroup
quota, HTTPS for the fake AWS, the function's runtime, and boto3 for the baseline function.

Lambda gives a function CPU in proportion to its memory (one vCPU at 1,769 MB); INIT has been
measured to run unthrottled up to 3 GB. The sandbox here (the function's runtime and the
extension, never the fake AWS or the fake Extensions API, which stand for AWS's own machines)
runs in a cgroup whose CPU quota the bench changes at the moment INIT ends.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ONE_VCPU_MB = 1769
PERIOD_US = 100_000  # the kernel's default CFS period
TICK = os.sysconf("SC_CLK_TCK")
BOTO3_CACHE = Path.home() / ".cache" / "parameters-secrets-sidecar" / "bench-boto3"


def share(memory_mb: int) -> float:
    """Lambda's vCPUs for a memory size."""
    return memory_mb / ONE_VCPU_MB


def cpu_secs(pid: int) -> float:
    """User plus system CPU of a process and its threads (``/proc/<pid>/stat``), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _mounts() -> list[tuple[str, str, str]]:
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4:
            found.append((parts[1], parts[2], parts[3]))
    return found


class CpuModel:
    """A cgroup for the sandbox with a CPU quota that can change at any moment.

    cgroup v2 (``cpu.max``) where its cpu controller is available; else cgroup v1's CFS
    bandwidth control (``cpu.cfs_quota_us``, the same kernel mechanism); else no quota at all
    (``kind`` None), and the bench estimates the throttled phases instead (see ``note``).
    """

    def __init__(self) -> None:
        self.kind: str | None = None
        self.path: Path | None = None
        self.note = ""
        name = f"parameters-secrets-sidecar-bench-{os.getpid()}"
        reasons: list[str] = []
        for mount, kind, options in _mounts():
            try:
                if kind == "cgroup2" and "cpu" in (Path(mount) / "cgroup.controllers").read_text(
                        ).split():
                    (Path(mount) / "cgroup.subtree_control").write_text("+cpu")
                    self._make(Path(mount) / name, "cgroup2", "cpu.max")
                elif kind == "cgroup" and "cpu" in options.split(","):
                    self._make(Path(mount) / name, "cgroup1", "cpu.cfs_quota_us")
                    (self._file("cpu.cfs_period_us")).write_text(str(PERIOD_US))
            except OSError as exc:
                reasons.append(f"{mount}: {exc.strerror}")
            if self.kind:
                break
        if self.kind == "cgroup1":
            self.note = ("cgroup v2's cpu controller is bound to cgroup v1 on this machine: the "
                         "quota is cgroup v1's cpu.cfs_quota_us (the same CFS bandwidth control "
                         "as v2's cpu.max)")
        elif not self.kind:
            self.note = ("NO CPU QUOTA AVAILABLE (" + ("; ".join(reasons) or "no cgroup with the "
                         "cpu controller") + "): the sandbox ran unthrottled, and each throttled "
                         "phase is estimated as max(its wall time, the sandbox's CPU in it / the "
                         "share), which ignores how the quota delays waiting work")

    def _make(self, path: Path, kind: str, quota_file: str) -> None:
        path.mkdir(exist_ok=True)
        if not (path / quota_file).exists():
            path.rmdir()
            raise OSError(0, f"no {quota_file}")
        self.kind, self.path = kind, path

    def _file(self, name: str) -> Path:
        assert self.path is not None
        return self.path / name

    def held(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """``argv`` started in the sandbox but held before its exec until ``release``.

        Entering a cgroup v1 group costs the entering process about 20 ms of wall time here (the
        kernel waits for an RCU grace period), which Lambda, whose sandbox is a whole VM, never
        pays; measured from ``release``, neither does the bench. The held shell waits in
        ``read``, using no CPU."""
        enter = f"echo $$ > {self._file('cgroup.procs')} && " if self.path is not None else ""
        process = subprocess.Popen(
            ["/bin/sh", "-c", enter + 'echo entered && read _ && exec "$@" </dev/null >/dev/null',
             "sh", *argv], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert process.stdout is not None
        entered = process.stdout.readline()
        process.stdout.close()  # the command's own output goes to /dev/null
        if entered != b"entered\n":  # in the group now: timing may start
            raise RuntimeError(f"could not start {argv[0]} in the sandbox")
        return process

    @staticmethod
    def release(process: subprocess.Popen[bytes]) -> None:
        """Let a ``held`` process exec its command now."""
        assert process.stdin is not None
        process.stdin.write(b"\n")
        process.stdin.close()

    def limit(self, vcpus: float | None) -> None:
        """Hold the sandbox to ``vcpus`` (None: unthrottled)."""
        if self.kind == "cgroup2":
            quota = "max" if vcpus is None else str(max(1000, round(vcpus * PERIOD_US)))
            self._file("cpu.max").write_text(f"{quota} {PERIOD_US}")
        elif self.kind == "cgroup1":
            microseconds = -1 if vcpus is None else max(1000, round(vcpus * PERIOD_US))
            self._file("cpu.cfs_quota_us").write_text(str(microseconds))

    def prioritise(self, factor: int) -> None:
        """Weigh the sandbox, and this process (the fake AWS and Extensions API), as ``factor``
        ordinary processes each, so that other load on a shared machine disturbs them less
        (Lambda's sandbox has its vCPUs to itself). Undone by ``close``."""
        if self.path is None:
            return
        weight = ("cpu.weight", str(min(10_000, 100 * factor))) if self.kind == "cgroup2" \
            else ("cpu.shares", str(1024 * factor))
        self._file(weight[0]).write_text(weight[1])
        ours = self.path.with_name(self.path.name + "-aws")
        ours.mkdir(exist_ok=True)
        (ours / weight[0]).write_text(weight[1])
        (ours / "cgroup.procs").write_text(str(os.getpid()))
        self._ours: Path | None = ours

    def kill_all(self) -> None:
        """Kill whatever is left in the sandbox (a runtime never ends by itself)."""
        if self.path is None:
            return
        for pid in self._file("cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)

    def close(self) -> None:
        if self.path is not None:
            self.kill_all()
            with contextlib.suppress(OSError):  # a process still exiting: the group stays
                self.path.rmdir()
        ours = getattr(self, "_ours", None)
        if ours is not None:  # back where this process was, and the group gone
            (ours.parent / "cgroup.procs").write_text(str(os.getpid()))
            with contextlib.suppress(OSError):
                ours.rmdir()


def make_tls(where: Path) -> tuple[ssl.SSLContext, Path]:
    """A self-signed certificate for 127.0.0.1: the fake AWS's server context, and a CA bundle
    of botocore's own (the size the SDKs load in Lambda) plus that certificate."""
    import botocore
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench fake AWS")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (where / "cert.pem").write_bytes(cert_pem)
    (where / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    bundle = where / "bundle.pem"
    bundle.write_bytes((Path(botocore.__file__).parent / "cacert.pem").read_bytes() + cert_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(where / "cert.pem", where / "key.pem")
    return server, bundle


def boto3_tree(python: Path) -> Path:
    """boto3 (the pinned version) installed for the baseline function and compiled by
    ``python``, as Lambda's Python runtimes carry it; built once per machine."""
    version = subprocess.run([str(python), "-c", "import sys; print(sys.version[:4])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    tree = BOTO3_CACHE / "site"
    if not (tree / "boto3").is_dir():
        shutil.rmtree(tree, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(tree),
                        "--disable-pip-version-check", "-c", str(REPO / "constraints.txt"),
                        "boto3"], check=True)
    marker = tree / f".compiled-{version}"
    if not marker.exists():
        subprocess.run([str(python), "-m", "compileall", "-q", str(tree)], check=False,
                       stdout=subprocess.DEVNULL)
        marker.touch()
    return tree


# The function: a Runtime API loop, as Lambda's Python runtime runs a handler. ``boto3``
# imports boto3 and makes its two clients at module level (in INIT, as AWS advises); ``sidecar``
# reads through the extension with the standard library. An event with "read" reads a String,
# a SecureString and a secret; the response says how many were read, never what.
FUNCTION = r'''
import http.client, json, os
KIND = os.environ["BENCH_FUNCTION"]
if KIND == "boto3":
    import boto3
    ssm = boto3.client("ssm")
    secrets = boto3.client("secretsmanager")

    def read():
        return [ssm.get_parameter(Name="/bench/string")["Parameter"]["Value"],
                ssm.get_parameter(Name="/bench/secure", WithDecryption=True)["Parameter"]["Value"],
                secrets.get_secret_value(SecretId="bench/secret")["SecretString"]]
else:
    PORT = int(os.environ.get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2773"))
    HEADERS = {"X-Aws-Parameters-Secrets-Token": os.environ["AWS_SESSION_TOKEN"]}
    local = []

    def get(path):
        if not local:
            local.append(http.client.HTTPConnection("127.0.0.1", PORT, timeout=120))
        local[0].request("GET", path, headers=HEADERS)
        answer = local[0].getresponse()
        body = json.loads(answer.read())
        assert answer.status == 200, answer.status
        return body

    def read():
        return [get("/systemsmanager/parameters/get?name=/bench/string")["Parameter"]["Value"],
                get("/systemsmanager/parameters/get?name=/bench/secure&withDecryption=true")[
                    "Parameter"]["Value"],
                get("/secretsmanager/get?secretId=bench/secret")["SecretString"]]

runtime = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
while True:
    runtime.request("GET", "/2018-06-01/runtime/invocation/next")
    event = runtime.getresponse()
    request_id = event.getheader("Lambda-Runtime-Aws-Request-Id")
    values = read() if json.loads(event.read()).get("read") else []
    runtime.request("POST", f"/2018-06-01/runtime/invocation/{request_id}/response",
                    body=json.dumps({"read": len(values)}).encode())
    runtime.getresponse().read()
'''
PREFETCH = "ssm:/bench/string,ssm:/bench/secure?withDecryption=true,secret:bench/secret"
