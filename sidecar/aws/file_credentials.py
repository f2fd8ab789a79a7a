"""The Agent's ``credentials_file_path``: AWS credentials read from a file in the standard
credentials format (its ``[default]`` profile) instead of the credential chain, and read again
while the daemon runs, so that a tool rotating the file (IAM Roles Anywhere's helper, for
example) is followed without a restart.

As in the Agent, the file must hold a session token: long-term IAM user keys are refused. The
file's contents are credentials: no error message quotes them.
"""

from __future__ import annotations

import configparser
from datetime import UTC, datetime, timedelta

from aiobotocore.credentials import AioDeferredRefreshableCredentials

from sidecar.core.errors import ApiError

# botocore renews credentials within 15 minutes of their expiry: this stamp makes it re-read
# the file about once a minute.
RECHECK = timedelta(minutes=15, seconds=60)
MAX_FILE_BYTES = 64 * 1024


def _failure(path: str, why: str) -> ApiError:
    return ApiError(500, "InternalFailure", f"credentials_file_path {path!r}: {why}",
                    transient=True)


def read(path: str) -> dict[str, str]:
    """The ``[default]`` profile's credentials, as botocore's refresh metadata."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(MAX_FILE_BYTES)
    except (OSError, UnicodeDecodeError) as exc:
        raise _failure(path, f"cannot be read ({type(exc).__name__})") from None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        raise _failure(path, "is not in the AWS credentials file format") from None
    if not parser.has_section("default"):
        raise _failure(path, "has no [default] profile")
    profile = parser["default"]
    access, secret = profile.get("aws_access_key_id"), profile.get("aws_secret_access_key")
    token = profile.get("aws_session_token")
    if not access or not secret:
        raise _failure(path, "lacks aws_access_key_id or aws_secret_access_key")
    if not token:
        raise _failure(path, "has no aws_session_token; long-term keys are refused")
    expiry = datetime.now(UTC) + RECHECK
    return {"access_key": access.strip(), "secret_key": secret.strip(), "token": token.strip(),
            "expiry_time": expiry.isoformat()}


class FileCredentialProvider:
    """A session's ``credential_provider`` component reading ``path`` on first use and again
    every minute or so (a missing file is an error for that read, not for start-up)."""

    def __init__(self, path: str) -> None:
        self._path = path

    async def load_credentials(self) -> AioDeferredRefreshableCredentials:
        return AioDeferredRefreshableCredentials(refresh_using=self._refresh,
                                                 method="credentials-file")

    async def _refresh(self) -> dict[str, str]:
        return read(self._path)
