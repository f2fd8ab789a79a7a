"""Which region a read goes to: the one its ARN names, else the daemon's own.

Parameters and secrets named by ARN (``arn:<partition>:ssm:<region>:<account>:parameter/...``,
``arn:<partition>:secretsmanager:<region>:<account>:secret:...``) live in the region the ARN
names; AWS answers a request sent to another region with an error, so a read by such an ARN
is sent to that region's endpoint (one client per region, created on first use, only for the
regions botocore's endpoint data lists for the service). Names and paths carry no region: they
go to the daemon's region, and so does a ``/aws/reference/secretsmanager/<ARN>`` name (SSM
reads the secret; AWS documents no cross-region reference).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sidecar.aws.identity import arn_region
from sidecar.core.errors import ApiError

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")


def region_of(name: str, home: str | None) -> str | None:
    """The region an ARN names when it is not ``home``; None for names and home ARNs.

    Raises ``ApiError`` (400 ``InvalidParameterValue``) for an ARN whose region field is not
    a region name, before any AWS call."""
    region = arn_region(name)
    if region is None:
        return None  # a name, or not an ARN with a region: let AWS answer for it
    if not _REGION.fullmatch(region):
        raise ApiError(400, "InvalidParameterValue",
                       f"the ARN's region {region[:32]!r} is not an AWS region name")
    return None if region == home else region


def batch_region(home: str | None) -> Callable[[str], str | None]:
    """The region a name's read goes to, for grouping a batch: like ``region_of``, but an ARN
    with a malformed region keeps its raw field (its own call then answers the 400)."""

    def region(name: str) -> str | None:
        try:
            return region_of(name, home)
        except ApiError:
            return arn_region(name)

    return region
