"""No value and no token in any log line, at DEBUG, in both formats, whatever the reads do."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import Aws, StartDaemon
from tests.support.proxy import FaultProxy, Rule


@pytest.mark.parametrize("log_format", ["Text", "JSON"])
def test_debug_output_holds_no_value_and_no_token(start_daemon: StartDaemon, aws: Aws,
                                                  proxy: FaultProxy, unique: str,
                                                  log_format: str) -> None:
    values = {
        "secure": f"secure-{unique}-value",
        "plain": f"plain-{unique}-value",
        "secret": f"secret-{unique}-string",
        "previous": f"previous-{unique}-string",
    }
    binary = f"binary-{unique}".encode()
    aws.ssm.put_parameter(Name=f"/{unique}/secure", Type="SecureString", Value=values["secure"])
    aws.ssm.put_parameter(Name=f"/{unique}/plain", Type="String", Value=values["plain"])
    aws.sm.create_secret(Name=f"{unique}/secret", SecretString=values["previous"])
    aws.sm.put_secret_value(SecretId=f"{unique}/secret", SecretString=values["secret"])
    aws.sm.create_secret(Name=f"{unique}/binary", SecretBinary=binary)
    token = f"token-{unique}-value"
    daemon = start_daemon(AWS_TOKEN=token, PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL="DEBUG",
                          AWS_LAMBDA_LOG_FORMAT=log_format, SECRETS_MANAGER_TTL="1")
    reads = [
        daemon.param(f"/{unique}/secure", withDecryption="true"),
        daemon.param(f"/{unique}/secure", withDecryption="true"),
        daemon.param(f"/{unique}/secure", withDecryption="true", refreshNow="true"),
        daemon.param(f"/{unique}/plain"),
        daemon.secret(f"{unique}/secret"),
        daemon.secret(f"{unique}/secret", versionStage="AWSPREVIOUS"),
        daemon.secret(f"{unique}/binary"),
        daemon.get(f"/v1/{unique}/secret"),
        daemon.param(f"/aws/reference/secretsmanager/{unique}/secret", withDecryption="true"),
    ]
    assert [r.status_code for r in reads] == [200] * len(reads)
    assert reads[0].json()["Parameter"]["Value"] == values["secure"]
    # Errors too: upstream failures and local validation.
    rule = proxy.add(Rule(match=f"{unique}/secret", kind="throttle"))
    try:
        daemon.secret(f"{unique}/secret", refreshNow="true")
    finally:
        proxy.remove(rule)
    daemon.get("/secretsmanager/get", params={"secretId": f"{unique}/secret", "junk": "1"})
    daemon.get("/secretsmanager/get", token="wrong", params={"secretId": f"{unique}/secret"})
    daemon.terminate()
    output = daemon.output
    assert "DEBUG" in output and "request" in output  # debug really was on
    forbidden = [*values.values(), token, base64.b64encode(binary).decode(), binary.decode()]
    leaked = [needle for needle in forbidden if needle in output]
    assert not leaked, "a value or the token reached the log"  # the needles are not printed
