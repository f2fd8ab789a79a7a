"""Demo mode: an embedded fake AWS (moto) with sample data, and curl lines to paste.

Everything it sets up is fake and local: fake credentials, a fixed demo token, moto on a free
loopback port. Real credentials in the caller's environment are set aside so they can never be
printed or used.
"""

from __future__ import annotations

import os
import time
from typing import Any

DEMO_TOKEN = "demo-token"
DEMO_REGION = "us-east-1"
_SET_ASIDE = ("AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_PROFILE",
              "AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_CONFIG_FILE",
              "AWS_SHARED_CREDENTIALS_FILE", "AWS_LAMBDA_RUNTIME_API")


def start_fake_aws() -> str:
    """Start moto in this process (a thread) and return its endpoint URL."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise SystemExit(
            "[parameters-secrets-sidecar] ERROR demo mode needs moto: run 'bash scripts/demo' "
            "from a clone (it installs it), or pip install 'moto[server,ssm,secretsmanager,s3]'"
        ) from None
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}"


def prepare_environment(endpoint: str) -> None:
    for name in _SET_ASIDE:
        os.environ.pop(name, None)
    # Nothing beside the demo needs a grace period: Ctrl-C stops it at once.
    os.environ.setdefault("PARAMETERS_SECRETS_EXTENSION_SHUTDOWN_GRACE_SECS", "0")
    os.environ.update({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_REGION": DEMO_REGION,
        "AWS_TOKEN": DEMO_TOKEN,
    })


# The names the README's snippets read (tests/operator/test_snippets.py runs every snippet
# against the demo and checks its answers against these): parameter name -> (type, value).
SNIPPET_PARAMETERS = {
    "/app/db/host": ("String", "db.example.internal"),
    "/app/config.json": ("String", '{"pool_size": 10, "feature_x": true}'),
    "/app/a": ("String", "alpha"),
    "/app/b": ("SecureString", "bravo-secret"),
    "/app/flag": ("String", "on"),
}
# secret id -> its versions, oldest first (the last is AWSCURRENT, the one before AWSPREVIOUS).
SNIPPET_SECRETS = {"prod/db": ('{"username": "app", "password": "demo-prod-previous"}',
                               '{"username": "app", "password": "demo-prod-password"}')}
SNIPPET_BUCKET = "demo-config"
SNIPPET_OBJECTS = {"allow-list.txt": b"alice\nbob\n"}


def seed(endpoint: str) -> None:
    """Sample parameters, secrets and an S3 object covering every kind the API serves, and the
    names the README's snippets use."""
    import botocore.session

    session = botocore.session.get_session()
    ssm: Any = session.create_client("ssm", region_name=DEMO_REGION, endpoint_url=endpoint)
    sm: Any = session.create_client("secretsmanager", region_name=DEMO_REGION,
                                    endpoint_url=endpoint)
    s3: Any = session.create_client("s3", region_name=DEMO_REGION, endpoint_url=endpoint)
    for name, (kind, value) in SNIPPET_PARAMETERS.items():
        ssm.put_parameter(Name=name, Type=kind, Value=value)
    for name, (first, *later) in SNIPPET_SECRETS.items():
        sm.create_secret(Name=name, SecretString=first)
        for value in later:
            time.sleep(0.01)  # distinct CreatedDate for each version
            sm.put_secret_value(SecretId=name, SecretString=value)
    s3.create_bucket(Bucket=SNIPPET_BUCKET)
    for key, body in SNIPPET_OBJECTS.items():
        s3.put_object(Bucket=SNIPPET_BUCKET, Key=key, Body=body, ContentType="text/plain")
    ssm.put_parameter(Name="/demo/greeting", Type="String",
                      Value="hello from parameters-secrets-sidecar")
    ssm.put_parameter(Name="/demo/regions", Type="StringList",
                      Value="us-east-1,eu-west-1,ap-southeast-2")
    ssm.put_parameter(Name="/demo/db/password", Type="SecureString", Value="demo-db-password")
    ssm.put_parameter(Name="/demo/feature-flag", Type="String", Value="off")
    ssm.put_parameter(Name="/demo/feature-flag", Type="String", Value="on", Overwrite=True)
    ssm.label_parameter_version(Name="/demo/feature-flag", ParameterVersion=1, Labels=["stable"])
    sm.create_secret(Name="demo/db-credentials",
                     SecretString='{"username":"app","password":"first-demo-password"}')
    time.sleep(0.01)  # distinct CreatedDate for the second version
    sm.put_secret_value(SecretId="demo/db-credentials",
                        SecretString='{"username":"app","password":"second-demo-password"}')
    sm.create_secret(Name="demo/signing-key", SecretBinary=bytes(range(16)))


def curl_lines(port: int) -> list[str]:
    base = f"http://127.0.0.1:{port}"
    header = f"-H 'X-Aws-Parameters-Secrets-Token: {DEMO_TOKEN}'"
    paths = [
        "/systemsmanager/parameters/get?name=/demo/greeting",
        "/systemsmanager/parameters/get?name=/demo/regions",
        "/systemsmanager/parameters/get?name=/demo/db/password&withDecryption=true",
        "/systemsmanager/parameters/get?name=/demo/feature-flag&version=1",
        "/systemsmanager/parameters/get?name=/demo/feature-flag&label=stable",
        "/secretsmanager/get?secretId=demo/db-credentials",
        "/secretsmanager/get?secretId=demo/db-credentials&versionStage=AWSPREVIOUS",
        "/secretsmanager/get?secretId=demo/signing-key",
        "/v1/demo/db-credentials",
        "/systemsmanager/parameters/get?name=/demo/greeting&refreshNow=true",
        f"/s3/get?bucket={SNIPPET_BUCKET}&key={next(iter(SNIPPET_OBJECTS))}",
    ]
    return [f"curl -si {header} '{base}{path}'" for path in paths]


def banner(port: int) -> str:
    lines = ["", "Demo mode: a fake AWS (moto) with sample data is running inside this process.",
             "Paste any of these (X-Cache and Age show the cache at work):", ""]
    lines += [f"  {line}" for line in curl_lines(port)]
    names = ", ".join([*SNIPPET_PARAMETERS, *SNIPPET_SECRETS, f"s3://{SNIPPET_BUCKET}"])
    lines += ["", f"The README's code snippets work against it too ({names} are here).",
              "They read the token from AWS_TOKEN; in their shell first:",
              "", f"  export AWS_TOKEN={DEMO_TOKEN}", "", "Stop with Ctrl-C.", ""]
    return "\n".join(lines)
