"""The README's first command (``bash scripts/demo``): sample values with no AWS account."""

from __future__ import annotations

from pathlib import Path

from tests.support.process import REPO, Daemon, Process, clean_env, free_port


def test_demo_command_serves_sample_values(home: Path) -> None:
    port = free_port()
    env = clean_env(home, {"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port)})
    process = Process(["bash", str(REPO / "scripts" / "demo")], env)
    daemon = Daemon.attach(process, "demo-token", port)
    try:
        daemon.wait_ready(timeout=120)
        greeting = daemon.param("/demo/greeting")
        assert greeting.status_code == 200
        assert greeting.json()["Parameter"]["Value"] == "hello from parameters-secrets-sidecar"
        assert daemon.param("/demo/feature-flag", label="stable").json()["Parameter"]["Value"] \
            == "off"
        previous = daemon.secret("demo/db-credentials", versionStage="AWSPREVIOUS")
        assert "first-demo-password" in previous.json()["SecretString"]
        assert daemon.secret("demo/signing-key").json()["SecretBinary"]
        daemon.wait_for_output("curl -si -H 'X-Aws-Parameters-Secrets-Token: demo-token'")
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
