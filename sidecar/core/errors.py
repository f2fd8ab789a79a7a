"""The one error type that crosses module boundaries, and its JSON rendering (SPEC section 4)."""

from __future__ import annotations

import json


class ApiError(Exception):
    """An error that becomes an HTTP response: status, AWS-style code and a message.

    ``transient`` marks upstream trouble worth serving a stale value over (throttling, 5xx,
    timeouts, connection failures); everything else is the upstream's final word on the key.
    ``item`` marks AWS's answer about one id (a per-item error of a batch call, or the error of
    a call that names one id), as opposed to a failure of a whole call: a group read lists the
    former beside the other members and fails on the latter.
    The message must never hold a parameter value, a secret value or the token.
    """

    def __init__(self, status: int, code: str, message: str, *, transient: bool = False,
                 item: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.transient = transient
        self.item = item

    def body(self) -> bytes:
        document = {"__type": self.code, "message": self.message}
        return json.dumps(document, separators=(",", ":")).encode()


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)
