"""parameters-secrets-sidecar's Python client: Powertools-shaped functions over the daemon.

Standard library only, Python 3.9+. Change ``from aws_lambda_powertools.utilities.parameters
import get_parameter`` to ``from sidecar_client import get_parameter``.
"""

from sidecar_client.decorator import cached
from sidecar_client.errors import (
    AccessDenied,
    BadToken,
    DaemonUnavailable,
    GetParameterError,
    InvalidRequest,
    ParameterNotFound,
    SecretNotFound,
    Throttled,
    TransformParameterError,
    UpstreamUnavailable,
)
from sidecar_client.parameters import (
    get_parameter,
    get_parameters,
    get_parameters_by_name,
    get_secret,
    get_secrets_by_name,
    transport,
)

__version__ = "0.1.0"
__all__ = [
    "AccessDenied", "BadToken", "DaemonUnavailable", "GetParameterError", "InvalidRequest",
    "ParameterNotFound", "SecretNotFound", "Throttled", "TransformParameterError",
    "UpstreamUnavailable", "cached", "get_parameter", "get_parameters", "get_parameters_by_name",
    "get_secret", "get_secrets_by_name", "transport",
]
