"""Every snippet of the README runs against the demo and prints what the README says (field
findings N4, N5), and every deployment example sets only variables something reads (N9).

The snippets are read from README.md itself, so they cannot drift from what is tested: a Python
or JavaScript block, or a shell block calling the demo with curl, that this test does not know
fails it. A snippet whose comment says ``prints, against the demo: X`` must print exactly X;
the migration examples, which print nothing, get a line that prints what they read.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar import demo
from tests.support.process import REPO, Daemon, Process, clean_env, free_port

README = (REPO / "README.md").read_text()
PRINTS = re.compile(r"(?:#|//) prints, against the demo: (.*)$", re.MULTILINE)


def blocks(language: str) -> list[str]:
    return [m.group(1) for m in re.finditer(rf"^```{language}\n(.*?)^```", README,
                                            re.DOTALL | re.MULTILINE)]


def after(block: str) -> str:
    """A migration example's ``# after`` part (its ``# before`` needs the other library)."""
    return block.split("# after\n", 1)[1]


HOST = demo.SNIPPET_PARAMETERS["/app/db/host"][1]
PASSWORD = json.loads(demo.SNIPPET_SECRETS["prod/db"][-1])["password"]
UNDER_APP = sorted(name.removeprefix("/app/") for name in demo.SNIPPET_PARAMETERS)

# Migration examples: how to recognise each, the line that prints what it read, the answer.
MIGRATIONS = {
    "from aws_lambda_powertools": (
        'import json\nprint(get_parameter("/app/db/host"), '
        'json.loads(get_secret("prod/db"))["password"])', f"{HOST} {PASSWORD}"),
    "from pydantic_settings import AWSSystemsManagerSettingsSource": (
        "from pydantic_settings import BaseSettings\n"
        "class Db(BaseSettings):\n"
        "    host: str\n"
        "    @classmethod\n"
        "    def settings_customise_sources(cls, settings_cls, **sources):\n"
        '        return (AWSSystemsManagerSettingsSource(settings_cls, "/app/db/"),)\n'
        "class Credentials(BaseSettings):\n"
        "    password: str\n"
        "    @classmethod\n"
        "    def settings_customise_sources(cls, settings_cls, **sources):\n"
        '        return (AWSSecretsManagerSettingsSource(settings_cls, "prod/db"),)\n'
        "print(Db().host, Credentials().password)", f"{HOST} {PASSWORD}"),
    "from ssm_cache": ("print(host, sorted(params))", f"{HOST} {UNDER_APP}"),
    "from lambda_cache": (
        "import json, types\ncontext = types.SimpleNamespace()\nhandler({}, context)\n"
        'print(context.host, json.loads(context.db)["password"])', f"{HOST} {PASSWORD}"),
}


@pytest.fixture(scope="module")
def demo_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """``python -m sidecar --demo`` (what scripts/demo runs), on a free port."""
    home = tmp_path_factory.mktemp("demo-home")
    port = free_port()
    env = clean_env(home, {"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port)})
    process = Process([sys.executable, "-m", "sidecar", "--demo"], env)
    daemon = Daemon.attach(process, demo.DEMO_TOKEN, port)
    try:
        daemon.wait_ready(timeout=120)
        daemon.wait_for_output("export AWS_TOKEN=demo-token")
        yield daemon
    finally:
        daemon.kill()


def snippet_env(daemon: Daemon, home: Path) -> dict[str, str]:
    """The shell the banner asks for (``export AWS_TOKEN=demo-token``), on the demo's port."""
    return clean_env(home, {"AWS_TOKEN": demo.DEMO_TOKEN,
                            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(daemon.port)})


def on_port(code: str, daemon: Daemon) -> str:
    """The snippet as written, with the demo's port for the default 2773 in its URLs."""
    return re.sub(r"(localhost|127\.0\.0\.1):2773\b", rf"\g<1>:{daemon.port}", code)


def run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip()


def test_the_readme_has_the_snippets_this_test_runs() -> None:
    """A new Python or JavaScript snippet must be runnable here: either it says what it prints,
    or it is a migration example this test knows."""
    python = blocks("python")
    assert len(python) >= 6 and blocks("js")
    for block in python + blocks("js"):
        ast_ok = block in blocks("js") or ast.parse(block) is not None
        known = PRINTS.search(block) or any(key in block for key in MIGRATIONS)
        assert ast_ok and known, f"a README snippet this test does not run:\n{block}"
    for key in MIGRATIONS:
        assert sum(key in block for block in python) == 1, key


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_snippet(index: int, demo_daemon: Daemon, home: Path, tmp_path: Path) -> None:
    block = blocks("python")[index]
    printed = PRINTS.search(block)
    if printed:
        code, expected = block, printed.group(1).strip()
    else:
        [(probe, expected)] = [item for key, item in MIGRATIONS.items() if key in block]
        code = after(block) + "\n" + probe + "\n"
    script = tmp_path / "snippet.py"
    script.write_text(on_port(code, demo_daemon))
    assert run([sys.executable, str(script)], snippet_env(demo_daemon, home), tmp_path) \
        == expected


@pytest.mark.parametrize("index", range(len(blocks("js"))))
def test_node_snippet(index: int, demo_daemon: Daemon, home: Path, tmp_path: Path) -> None:
    """With ``node`` 18+ on PATH (not installed by the scripts: skipped with the reason)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on PATH: the Node.js snippet runs where Node.js 18+ is installed")
    block = blocks("js")[index]
    printed = PRINTS.search(block)
    assert printed, block
    assert "localhost" not in block, "Node 18 resolves localhost to ::1 first (see the README)"
    script = tmp_path / "snippet.js"
    script.write_text(on_port(block, demo_daemon))
    env = snippet_env(demo_daemon, home)
    env["PATH"] = f"{Path(node).parent}:/usr/bin:/bin"
    assert run([node, str(script)], env, tmp_path) == printed.group(1).strip()


def curl_blocks() -> list[str]:
    """Shell snippets that call the demo with curl (other curl lines call other daemons, such
    as the local mode's, and say so by their token)."""
    return [block for block in blocks("sh") if "curl " in block and demo.DEMO_TOKEN in block]


def test_curl_snippets_show_the_cache_at_work(demo_daemon: Daemon, home: Path,
                                              tmp_path: Path) -> None:
    """"Run the same line twice: the first answer says X-Cache: miss, the second hit"."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("no curl on PATH (Debian package curl)")
    assert curl_blocks()
    for block in curl_blocks():
        script = tmp_path / "snippet.sh"
        script.write_text(on_port(block, demo_daemon))
        answers = [run(["sh", str(script)], snippet_env(demo_daemon, home), tmp_path)
                   for _ in range(2)]
        assert [re.findall(r"^X-Cache: (\w+)", answer, re.MULTILINE | re.IGNORECASE)
                for answer in answers] == [["miss"], ["hit"]], answers
        assert answers[1].startswith("HTTP/1.1 200")
        body = json.loads(answers[1].split("\n\n", 1)[1])  # text mode: \r\n read as \n
        assert body["Parameter"]["Value"] == "hello from parameters-secrets-sidecar"


def test_the_demo_serves_an_s3_object(demo_daemon: Daemon) -> None:
    """The S3 read the README describes (``/s3/get``) has an object to read in the demo."""
    key, body = next(iter(demo.SNIPPET_OBJECTS.items()))
    answer = demo_daemon.get("/s3/get", params={"bucket": demo.SNIPPET_BUCKET, "key": key})
    assert answer.status_code == 200 and answer.content == body
    assert any(f"/s3/get?bucket={demo.SNIPPET_BUCKET}" in line
               for line in demo.curl_lines(demo_daemon.port))


# --- N9: every variable a deployment example sets is read by something --------------------

def sdk_variables() -> set[str]:
    """The variables botocore reads: its session configuration and its credential providers."""
    import botocore.configprovider
    import botocore.credentials

    names = {spec[1] for spec in botocore.configprovider.BOTOCORE_DEFAUT_SESSION_VARIABLES.values()
             if isinstance(spec[1], str)}
    names |= {name for spec in botocore.configprovider.BOTOCORE_DEFAUT_SESSION_VARIABLES.values()
              if isinstance(spec[1], list) for name in spec[1]}
    env = botocore.credentials.EnvProvider
    names |= {env.ACCESS_KEY, env.SECRET_KEY, env.TOKENS[0], env.TOKENS[1], env.EXPIRY_TIME}
    names |= {"AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_S3",
              "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}
    return names


# Read by the interpreter itself (the Python layer under systemd), not by our code.
INTERPRETER_VARIABLES = {"PYTHONDONTWRITEBYTECODE"}


def variables_read_by_our_code() -> set[str]:
    """Every quoted upper-case name in the daemon's, the client's and the service's code."""
    sources = [*(REPO / "sidecar").rglob("*.py"), *(REPO / "client" / "sidecar_client").rglob(
        "*.py"), REPO / "service" / "parameters-secrets-sidecar-token"]
    found: set[str] = set()
    for path in sources:
        text = path.read_text()
        found |= set(re.findall(r"[\"']([A-Z][A-Z0-9_]{2,})[\"']", text))
        found |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]{2,})", text))
    return found


def deployment_variables() -> dict[str, set[str]]:
    """Each deployment example's variable names, as that format writes them."""
    examples: dict[str, set[str]] = {}
    for block in blocks("yaml"):
        if "kind: Pod" in block:
            examples["Kubernetes"] = set(re.findall(r"\{name: ([A-Z0-9_]+), value:", block))
        elif "services:" in block:
            names: set[str] = set()
            for section in re.findall(r"environment:\n((?: {6}.*\n)+)", block):
                names |= set(re.findall(r"^ {6}([A-Z0-9_]+):", section, re.MULTILINE))
            examples["compose"] = names
        elif "AWS::Serverless" in block:
            examples["SAM"] = set(re.findall(r"^ {10}([A-Z0-9_]+):", block, re.MULTILINE))
    for block in blocks("json"):
        if "containerDefinitions" in block:
            examples["ECS"] = {entry["name"] for container in
                               json.loads(block)["containerDefinitions"]
                               for entry in container.get("environment", [])
                               + container.get("secrets", [])}
    for block in blocks("ts"):
        examples["CDK"] = set(re.findall(r'addEnvironment\("([A-Z0-9_]+)"', block))
    for unit in sorted((REPO / "service").glob("*.service")):
        examples[f"systemd {unit.name}"] = set(re.findall(r"^Environment=([A-Z0-9_]+)=",
                                                          unit.read_text(), re.MULTILINE))
    return examples


def test_deployment_examples_use_only_variables_something_reads() -> None:
    examples = deployment_variables()
    assert {"Kubernetes", "compose", "ECS", "SAM", "CDK"} <= set(examples), set(examples)
    assert all(examples.values()), examples
    known = variables_read_by_our_code() | sdk_variables() | INTERPRETER_VARIABLES
    unread = {name: sorted(names - known) for name, names in examples.items() if names - known}
    assert not unread, f"variables nothing reads: {unread}"


def test_the_check_catches_a_made_up_variable() -> None:
    known = variables_read_by_our_code() | sdk_variables()
    assert "SIDECAR_TOKEN_FILE" not in known  # what the Kubernetes example once gave the app
    assert {"AWS_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID"} <= known
