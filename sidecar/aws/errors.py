"""Every failure of an AWS call as the one error the client sees (SPEC section 4), classified
once: ``transient`` (throttling, 5xx, time-outs, connection failures: serve a stale value and
retry later) or definite (AWS's final word: drop the cached value)."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    HTTPClientError,
    MetadataRetrievalError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from sidecar.core.errors import ApiError

# botocore's own list of throttling codes (botocore/retries/standard.py), and S3's SlowDown.
THROTTLING = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException",
    "ProvisionedThroughputExceededException", "SlowDown", "EC2ThrottledException",
    "BandwidthLimitExceeded", "LimitExceededException", "PriorRequestNotComplete",
})
# Codes AWS answers with HTTP 5xx: a fault on AWS's side, never its word on the item. The same
# code in a batch's per-item ``Errors`` list is classified the same way (S3-13).
SERVER_FAULTS = frozenset({
    "InternalServiceError", "InternalServerError", "InternalFailure", "ServiceUnavailable",
    "InternalError",
})
NOT_FOUND = frozenset({"ParameterNotFound", "ParameterVersionNotFound",
                       "ResourceNotFoundException"})


def clean_message(message: str, status: int) -> str:
    """AWS's message, unless the body was not AWS's JSON (an HTML page from a proxy)."""
    if "<" in message or "\n" in message or len(message) > 1024 or message.isdigit():
        return f"AWS answered HTTP {status} with a body that is not an AWS error"
    return message


def is_transient(code: str, status: int) -> bool:
    return status >= 500 or code in THROTTLING or code in SERVER_FAULTS


def item_error(code: str, message: str) -> ApiError:
    """One id's error inside a batch answer (BatchGetSecretValue's ``Errors``), classified as a
    single read of that id would be: a server fault or throttling is transient."""
    code = code or "InternalFailure"
    status = 500 if code in SERVER_FAULTS else 400
    return ApiError(status, code, clean_message(message or code, status),
                    transient=is_transient(code, status), item=True)


def translate(exc: BaseException) -> ApiError:
    """Any failure of an AWS call as the error the client sees (SPEC section 4)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400)
        code = str(error.get("Code") or "")
        if not code or not code.replace(".", "").replace("_", "").isalnum() or code.isdigit():
            code = "InternalFailure" if status < 500 else "ServiceUnavailable"
        message = clean_message(str(error.get("Message") or code), status)
        # AWS's JSON protocol answers every client error with 400; moto and proxies sometimes
        # use 404 or 403, so the code decides, and only a real 5xx keeps its status.
        if status < 500:
            status = 400
        return ApiError(status, code, message, transient=is_transient(code, status))
    if isinstance(exc, TimeoutError | ConnectTimeoutError | ReadTimeoutError):
        return ApiError(504, "UpstreamTimeout", "the AWS call timed out", transient=True)
    if isinstance(exc, BotoConnectionError | HTTPClientError | OSError):
        # Refused, reset, DNS, TLS and proxy failures alike: AWS was not heard from.
        return ApiError(
            502, "UpstreamUnavailable",
            f"AWS could not be reached or closed the connection ({type(exc).__name__})",
            transient=True,
        )
    if isinstance(exc, ParamValidationError):
        report = str(getattr(exc, "kwargs", {}).get("report", ""))
        field = report.split("parameter ", 1)[1].split(",")[0].split()[0] \
            if "parameter " in report else "a parameter"
        return ApiError(400, "InvalidParameterValue", f"AWS's rules refuse {field[:64]}")
    if isinstance(exc, CredentialRetrievalError | MetadataRetrievalError):
        # The credential provider (container or instance metadata endpoint) failed: transient,
        # a cached value is kept and served stale meanwhile.
        return ApiError(500, "InternalFailure",
                        f"AWS credentials could not be retrieved ({type(exc).__name__})",
                        transient=True)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        # Not transient: nothing will change until someone configures credentials (N12).
        return ApiError(500, "InternalFailure",
                        "no AWS credentials found in the credential chain (environment, "
                        "profile, container or instance metadata)")
    if isinstance(exc, NoRegionError):
        return ApiError(500, "InternalFailure", "no AWS region configured: set AWS_REGION")
    if isinstance(exc, BotoCoreError):
        return ApiError(500, "InternalFailure", f"AWS SDK error: {type(exc).__name__}")
    return ApiError(500, "InternalFailure", f"internal error: {type(exc).__name__}")


def outcome_kind(error: ApiError | None) -> str:
    """An upstream call's outcome, in the metrics' vocabulary."""
    if error is None:
        return "cancelled"
    if error.code in THROTTLING:
        return "throttled"
    if error.code == "UpstreamTimeout":
        return "timeout"
    if error.code == "UpstreamUnavailable":
        return "unavailable"
    if error.status >= 500:
        return "server_error"
    return "client_error"
