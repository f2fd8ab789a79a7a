"""Real runtime processes for the exec wrapper's tests: each prints, at its first line, a digest
of every variable it is asked about (never a value), the names of its whole environment and its
pid, then calls the Runtime API's ``invocation/next`` as a Lambda runtime does when its INIT is
over (the fake Extensions API ends INIT then)."""

from __future__ import annotations

import hashlib
from pathlib import Path

PYTHON_RUNTIME = """\
import hashlib, os, sys, urllib.request
for name in sys.argv[1:]:
    value = os.environ.get(name)
    print("env", name, "-" if value is None else hashlib.sha256(value.encode()).hexdigest()[:20])
given = open("/proc/self/environ", "rb").read().split(b"\\0")  # not Python's LC_CTYPE coercion
print("names", ",".join(sorted(e.split(b"=")[0].decode() for e in given if e)))
print("pid", os.getpid(), flush=True)
urllib.request.urlopen("http://" + os.environ["AWS_LAMBDA_RUNTIME_API"]
                       + "/2018-06-01/runtime/invocation/next")
"""

NODE_RUNTIME = """\
const crypto = require("crypto");
const http = require("http");
for (const name of process.argv.slice(2)) {
  const value = process.env[name];
  console.log("env", name, value === undefined ? "-"
    : crypto.createHash("sha256").update(value, "utf8").digest("hex").slice(0, 20));
}
console.log("names", Object.keys(process.env).sort().join(","));
console.log("pid", process.pid);
http.get(`http://${process.env.AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next`);
"""

# For the binary layer: no Python, no Node; sh with sha256sum, cut, env and sort.
SH_RUNTIME = """\
for name in "$@"; do
  eval "set=\\${$name+x}"
  if [ -z "$set" ]; then echo "env $name -"; continue; fi
  eval "value=\\$$name"
  echo "env $name $(printf %s "$value" | sha256sum | cut -c1-20)"
done
echo "names $(env | cut -d= -f1 | sort | tr '\\n' ',' | sed 's/,$//')"
echo "pid $$"
"""
SH_TOOLS = ("sh", "sha256sum", "cut", "env", "sort", "tr", "sed")


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:20]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def parse(output: str) -> tuple[dict[str, str], list[str], int]:
    """The digests by variable, the environment's names, and the pid a runtime printed."""
    digests: dict[str, str] = {}
    names: list[str] = []
    pid = -1
    for line in output.splitlines():
        word, _, rest = line.partition(" ")
        if word == "env":
            name, _, value = rest.partition(" ")
            digests[name] = value
        elif word == "names":
            names = sorted(rest.split(","))
        elif word == "pid":
            pid = int(rest)
    return digests, names, pid


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""
