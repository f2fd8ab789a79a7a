"""Reads by an ARN naming another region go to that region (issue 23), checked at the proxy by
the SigV4 credential scope each call was signed for."""

from __future__ import annotations

import boto3

from tests.conftest import Aws, StartDaemon
from tests.support.proxy import FaultProxy

OTHER = "us-west-2"


def _other_region(aws: Aws, service: str) -> object:
    endpoint = aws.ssm.meta.endpoint_url
    return boto3.client(service, region_name=OTHER, endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _regions(proxy: FaultProxy, fragment: str) -> set[str]:
    with proxy._lock:
        return {call.region for call in proxy.calls if any(fragment in n for n in call.names)}


def test_a_read_by_arn_is_signed_for_the_region_it_names(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, unique: str) -> None:
    west_ssm = _other_region(aws, "ssm")
    west_sm = _other_region(aws, "secretsmanager")
    name = f"/{unique}/west"
    west_ssm.put_parameter(Name=name, Type="String", Value="from the west")  # type: ignore[attr-defined]
    aws.ssm.put_parameter(Name=name, Type="String", Value="from the east")
    arn = f"arn:aws:ssm:{OTHER}:123456789012:parameter{name}"
    secret_arn = west_sm.create_secret(  # type: ignore[attr-defined]
        Name=f"{unique}/west-secret", SecretString="secret in the west")["ARN"]
    daemon = start_daemon()  # AWS_REGION=us-east-1
    by_arn = daemon.param(arn)
    assert by_arn.status_code == 200, by_arn.text
    assert by_arn.json()["Parameter"]["Value"] == "from the west"
    assert daemon.param(name).json()["Parameter"]["Value"] == "from the east"
    assert daemon.param(arn).headers["X-Cache"] == "hit"  # keys keep the regions apart
    assert daemon.param(name).headers["X-Cache"] == "hit"
    secret = daemon.secret(secret_arn)
    assert (secret.status_code, secret.json()["SecretString"]) == (200, "secret in the west")
    batch = daemon.get("/systemsmanager/parameters/batch",
                       params=[("name", arn), ("name", f"/{unique}/missing"), ("refreshNow", "1")])
    assert [p["Value"] for p in batch.json()["Parameters"]] == ["from the west"]
    assert _regions(proxy, arn) == {OTHER}
    assert _regions(proxy, secret_arn) == {OTHER}
    assert _regions(proxy, f"/{unique}/missing") == {"us-east-1"}


def test_malformed_and_unknown_regions_are_refused_before_any_call(
        start_daemon: StartDaemon, aws: Aws, proxy: FaultProxy, unique: str) -> None:
    west_ssm = _other_region(aws, "ssm")
    west_ssm.put_parameter(Name=f"/{unique}/x", Type="String", Value="west")  # type: ignore[attr-defined]
    daemon = start_daemon()
    for region in ["Not_A_Region", *(f"zz-typo-{index}" for index in range(20))]:
        arn = f"arn:aws:ssm:{region}:123456789012:parameter/{unique}/x"
        refused = daemon.param(arn)
        assert (refused.status_code, refused.json()["__type"]) == (400, "InvalidParameterValue")
        assert "region" in refused.json()["message"]
    assert proxy.count_matching(unique) == 0
    # Typos hold nothing: a real region is still reached after any number of them.
    real = daemon.param(f"arn:aws:ssm:{OTHER}:123456789012:parameter/{unique}/x")
    assert (real.status_code, real.json()["Parameter"]["Value"]) == (200, "west")
