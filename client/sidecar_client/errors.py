"""Typed errors, built from the daemon's ``{"__type", "message"}`` body.

``GetParameterError`` and ``TransformParameterError`` carry Powertools' names, so code that
catches those keeps working after switching imports. Messages never hold a value or the token.
"""

from __future__ import annotations


class GetParameterError(Exception):
    """A read failed. ``code`` is the daemon's ``__type`` (AWS's error code where AWS answered)
    and ``status`` its HTTP status (0 when the daemon was not reached)."""

    def __init__(self, message: str, code: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class TransformParameterError(GetParameterError):
    """The value could not be transformed (not JSON, not base64, no such JSON key)."""


class ParameterNotFound(GetParameterError):
    """No such parameter, version or label (``ParameterNotFound``, ``ParameterVersionNotFound``)."""


class SecretNotFound(GetParameterError):
    """No such secret or version (``ResourceNotFoundException``)."""


class AccessDenied(GetParameterError):
    """AWS refused the call (``AccessDeniedException``), or a KMS key could not be used."""


class Throttled(GetParameterError):
    """AWS throttled the call even after retries, and nothing cached could be served."""


class UpstreamUnavailable(GetParameterError):
    """AWS could not be reached, timed out or failed (5xx)."""


class InvalidRequest(GetParameterError):
    """The daemon refused the request itself (a bad name, selector or option)."""


class BadToken(GetParameterError):
    """The daemon refused the token: check ``AWS_TOKEN`` / ``AWS_SESSION_TOKEN``."""


class DaemonUnavailable(GetParameterError):
    """The daemon did not answer (not running, wrong port, or shutting down)."""


_BY_CODE: dict[str, type[GetParameterError]] = {
    "ParameterNotFound": ParameterNotFound,
    "ParameterVersionNotFound": ParameterNotFound,
    "ResourceNotFoundException": SecretNotFound,
    "NoSuchKey": SecretNotFound,
    "AccessDeniedException": AccessDenied,
    "AccessDenied": AccessDenied,
    "KMSAccessDeniedException": AccessDenied,
    "ThrottlingException": Throttled,
    "TooManyRequestsException": Throttled,
    "UpstreamTimeout": UpstreamUnavailable,
    "UpstreamUnavailable": UpstreamUnavailable,
    # AWS's 5xx codes, for errors that arrive without their status (a batch's ``Errors`` list)
    "InternalServerError": UpstreamUnavailable,
    "InternalServiceError": UpstreamUnavailable,
    "ServiceUnavailable": UpstreamUnavailable,
    "TransformFailed": TransformParameterError,
    "BadToken": BadToken,
    "ShuttingDown": DaemonUnavailable,
    "TooManyConnections": DaemonUnavailable,
}


def from_response(status: int, code: str, message: str) -> GetParameterError:
    kind = _BY_CODE.get(code)
    if kind is None:
        if status >= 500:
            kind = UpstreamUnavailable
        elif code in ("MissingParameter", "UnknownParameter", "InvalidParameterValue",
                      "InvalidRequest", "ValidationException"):
            kind = InvalidRequest
        else:
            kind = GetParameterError
    return kind(f"{code}: {message}" if code else message, code, status)
