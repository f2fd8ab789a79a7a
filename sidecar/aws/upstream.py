"""The AWS side as the cache sees it: one method per kind of fetch, each returning the rendered
body (or a batch's bodies and per-id errors) and raising ``ApiError``. The calls themselves live
in one module per service (``ssm``, ``secrets``, ``s3``); clients and roles in ``clients``."""

from __future__ import annotations

from collections.abc import Iterable

from sidecar.aws import s3, secrets, ssm
from sidecar.aws.clients import TOTAL_ATTEMPTS, TRIMMED_DATA, Clients
from sidecar.aws.identity import batches
from sidecar.aws.s3 import Meta, NotModified
from sidecar.aws.shapes import BatchAnswer
from sidecar.core.key import SECRETS, SSM, Key

__all__ = ["TOTAL_ATTEMPTS", "TRIMMED_DATA", "NotModified", "Upstream", "batches"]


class Upstream(Clients):
    async def start(self, services: Iterable[str] = (SSM, SECRETS)) -> None:
        """Create these services' clients now (the rest on first use); raises ``ApiError``."""
        await self.warm(services)

    async def fetch(self, key: Key) -> bytes:
        """A single parameter or secret, rendered; raises ``ApiError``."""
        if key.service == SSM:
            return await ssm.get_parameter(self, key)
        return await secrets.get_secret_value(self, key)

    async def fetch_parameters_and_errors(self, keys: list[Key]) -> BatchAnswer:
        return await ssm.get_parameters(self, keys)

    async def fetch_secrets_and_errors(self, keys: list[Key]) -> BatchAnswer:
        return await secrets.batch_get_secret_value(self, keys)

    async def fetch_path(self, key: Key) -> tuple[bytes, dict[Key, bytes]]:
        return await ssm.get_parameters_by_path(self, key)

    async def fetch_object(self, key: Key, etag: str | None, limit: int) -> tuple[bytes, Meta]:
        return await s3.get_object(self, key, etag, limit)

    async def list_tagged(self, tag: str, role: str | None, limit: int) -> list[str]:
        return await secrets.list_tagged(self, tag, role, limit)
