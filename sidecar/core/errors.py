"""The one error type that crosses module boundaries, and its JSON rendering (SPEC section 4)."""

from __future__ import annotations

import json


class ApiError(Exception):
    """An error that becomes an HTTP response: status, AWS-style code and a message.

    ``transient`` marks upstream trouble worth serving a stale value over (throttling, 5xx,
    timeouts, connection failures); everything else is the upstream's final word on the key.
    The message must never hold a parameter value, a secret value or the token.
    """

    def __init__(self, status: int, code: str, message: str, *, transient: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.transient = transient

    def body(self) -> bytes:
        document = {"__type": self.code, "message": self.message}
        return json.dumps(document, separators=(",", ":")).encode()


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)
