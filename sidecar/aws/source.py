"""What the cache fetches from, as one interface: AWS (``upstream.Upstream``) or, in local mode,
a file (``local.LocalUpstream``). Both answer with the same bodies and raise the same errors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sidecar.aws.s3 import Meta
from sidecar.aws.shapes import BatchAnswer
from sidecar.core.key import SECRETS, SSM, Key


class Source(Protocol):
    """Every method raises ``ApiError`` (AWS's word on one id carries ``item=True``)."""

    async def start(self, services: Iterable[str] = (SSM, SECRETS)) -> None:
        """Be ready to answer these services (AWS: create their clients now)."""

    async def close(self) -> None: ...

    async def check_identity(self) -> None:
        """The Agent's ``validate_credentials`` (STS GetCallerIdentity)."""

    async def fetch(self, key: Key) -> bytes:
        """A single parameter or secret: the body of a single read."""

    async def fetch_parameters_and_errors(self, keys: list[Key]) -> BatchAnswer:
        """Up to 10 parameters sharing ``with_decryption`` and role: the bodies found, and
        ``ParameterNotFound`` for those not found; any other key is left out (fetched alone)."""

    async def fetch_secrets_and_errors(self, keys: list[Key]) -> BatchAnswer:
        """Up to 20 secrets without version selectors: bodies, and each other id's error."""

    async def fetch_path(self, key: Key) -> tuple[bytes, dict[Key, bytes]]:
        """A path read's body, and the single-read body of each parameter in it."""

    async def fetch_object(self, key: Key, etag: str | None, limit: int) -> tuple[bytes, Meta]:
        """An S3 object's bytes and headers; raises ``NotModified`` when ``etag`` still
        matches, 400 ``ObjectTooLarge`` over ``limit`` bytes."""

    async def list_tagged(self, tag: str, role: str | None, limit: int) -> list[str]:
        """Names of at most ``limit`` secrets carrying the tag key ``tag``."""
