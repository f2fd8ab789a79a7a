"""Role chaining (``roleArn``): AWS clients that act as another IAM role, one set per role.

The first read with a role calls STS AssumeRole with the daemon's own credentials; the answer
becomes refreshable credentials (botocore renews them before they expire, by calling AssumeRole
again) of a session used only for that role. Its clients are created on first use, per service.

As the Secrets Manager Agent does, roles are never forgotten while the daemon runs: at
``max_roles`` roles a new one is refused (400 ``MaxRolesExceeded``); a role that cannot be
assumed is answered 403 ``AccessDeniedException`` and does not count. Cache separation is the
cache key's job (``Key.role``), not this module's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiobotocore.credentials import AioRefreshableCredentials
from aiobotocore.session import AioSession

from sidecar.core import logs
from sidecar.core.errors import ApiError

SESSION_NAME = "parameters-secrets-sidecar"
DEFAULT_MAX_ROLES = 20  # the Agent's default and its maximum
Metadata = dict[str, str]


class _FixedProvider:
    """A credential resolver for a role's session: always that role's refreshable credentials."""

    def __init__(self, credentials: AioRefreshableCredentials) -> None:
        self._credentials = credentials

    async def load_credentials(self) -> AioRefreshableCredentials:
        return self._credentials


async def once(made: dict[str, asyncio.Future[Any]], key: str,
               make: Callable[[], Awaitable[Any]]) -> Any:
    """``make()`` once per ``key``, shared by concurrent callers; a failure is forgotten, so
    the next caller tries again.

    The failure is forgotten by the future itself, when it ends: every caller may have stopped
    waiting by then (a read's timeout cancels its wait, not the shared work), and an entry left
    behind would count toward ``max_roles`` for a role that was never assumed (review S3-10).
    """
    future = made.get(key)
    if future is None:
        future = made[key] = asyncio.ensure_future(make())
        future.add_done_callback(lambda done: _forget_failure(made, key, done))
    return await asyncio.shield(future)


def _forget_failure(made: dict[str, asyncio.Future[Any]], key: str,
                    future: asyncio.Future[Any]) -> None:
    # ``exception()`` also marks the failure as seen: with no caller left to receive it,
    # asyncio would otherwise log "Task exception was never retrieved".
    if (future.cancelled() or future.exception() is not None) and made.get(key) is future:
        del made[key]


class _Role:
    def __init__(self, session: AioSession) -> None:
        self.session = session
        self.clients: dict[str, asyncio.Future[Any]] = {}


class RoleClients:
    """``client(service, role, region)``: a client of ``service`` acting as ``role``."""

    def __init__(self, assume: Callable[[str], Awaitable[Metadata]],
                 new_session: Callable[[], AioSession],
                 new_client: Callable[[AioSession, str, str | None], Awaitable[Any]],
                 max_roles: int = DEFAULT_MAX_ROLES) -> None:
        self._assume = assume
        self._new_session = new_session
        self._new_client = new_client
        self.max_roles = max_roles
        # Assumed roles, and those being assumed: both count toward ``max_roles``; a failed
        # AssumeRole removes its own entry (``once``).
        self._roles: dict[str, asyncio.Future[Any]] = {}

    def __len__(self) -> int:
        return len(self._roles)

    async def client(self, service: str, role: str, region: str | None = None) -> Any:
        """A client of ``service`` (in ``region``, None: the daemon's) acting as ``role``."""
        if role not in self._roles and len(self._roles) >= self.max_roles:
            raise ApiError(400, "MaxRolesExceeded",
                           f"the maximum number of assumed roles ({self.max_roles}) has been "
                           f"reached; cannot assume {role}")
        held: _Role = await once(self._roles, role, lambda: self._establish(role))
        return await once(held.clients, f"{service}@{region}",
                          lambda: self._new_client(held.session, service, region))

    async def _establish(self, role: str) -> _Role:
        metadata = await self._assume(role)
        credentials = AioRefreshableCredentials.create_from_metadata(
            metadata, refresh_using=lambda: self._assume(role), method="assume-role")
        session = self._new_session()
        session.register_component("credential_provider", _FixedProvider(credentials))
        logs.info("role assumed", role=role, roles=len(self._roles), max_roles=self.max_roles)
        return _Role(session)
