"""The AWS clients: one aiobotocore session, a client per service created on first use (or
warmed at start), role-scoped clients (``roleArn``), and the one place every call goes through
(metrics, DEBUG lines, error translation)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterable
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import ClientError

from sidecar import __version__
from sidecar.aws.errors import outcome_kind, translate
from sidecar.aws.roles import SESSION_NAME, Metadata, RoleClients, once
from sidecar.aws.tls import SharedContextSession
from sidecar.config.settings import Settings
from sidecar.core import logs
from sidecar.core.errors import ApiError
from sidecar.core.key import S3, SECRETS, SSM
from sidecar.core.metrics import Metrics

# Attempts in all (botocore's ``total_max_attempts``; its ``max_attempts`` counts retries).
TOTAL_ATTEMPTS = 3
SERVICE_NAMES = {SSM: "ssm", SECRETS: "secretsmanager", S3: "s3", "appconfig": "appconfigdata"}
TRIMMED_DATA = Path(__file__).with_name("botocore_data")  # see scripts/trim_botocore_data.py


def with_trimmed_data(session: AioSession) -> AioSession:
    """Trimmed service models and endpoints first: a quarter of the daemon's memory otherwise."""
    loader = session.get_component("data_loader")
    if str(TRIMMED_DATA) not in loader.search_paths:
        loader.search_paths.insert(0, str(TRIMMED_DATA))
    return session


class Clients:
    """``call(service, api, ...)``: one AWS API call, with the daemon's or a role's credentials.

    Clients are created once per service on first use; ``warm`` creates some at start so that
    the first read of them does not pay for it. ``close`` closes every client.
    """

    def __init__(self, settings: Settings, session: AioSession | None = None,
                 metrics: Metrics | None = None) -> None:
        self._settings = settings
        self.metrics = metrics or Metrics()
        self._session = with_trimmed_data(session or get_session())
        if settings.credentials_file:
            from sidecar.aws.file_credentials import FileCredentialProvider

            self._session.register_component(
                "credential_provider", FileCredentialProvider(settings.credentials_file))
        self._stack = AsyncExitStack()
        self._clients: dict[str, asyncio.Future[Any]] = {}
        self._regions: set[str] = set()
        self._known: dict[str, frozenset[str]] = {}
        # The daemon's own region: a read by an ARN naming it uses the default clients.
        self.home_region: str | None = settings.region or self._session.get_config_variable(
            "region")
        self.roles = RoleClients(self._assume, lambda: with_trimmed_data(AioSession()),
                                 self._new_client, settings.max_roles)

    def _config(self, timeout_ms: int) -> AioConfig:
        timeouts: dict[str, float] = {}
        if timeout_ms > 0:
            timeouts = {"connect_timeout": timeout_ms / 1000, "read_timeout": timeout_ms / 1000}
        return AioConfig(
            http_session_cls=SharedContextSession,  # one CA bundle load for all clients
            max_pool_connections=self._settings.max_connections,
            retries={"mode": "standard", "total_max_attempts": TOTAL_ATTEMPTS},
            user_agent_extra=f"parameters-secrets-sidecar/{__version__}",
            **timeouts,
        )

    def _timeout_ms(self, service: str) -> int:
        """The per-attempt timeout of a service's client (0: botocore's default). STS and
        AppConfig keep the default: their reads are bounded by their own deadlines."""
        return {SSM: self._settings.ssm_timeout_ms, S3: self._settings.s3_timeout_ms,
                SECRETS: self._settings.secrets_timeout_ms}.get(service, 0)

    async def _new_client(self, session: AioSession, service: str,
                          region: str | None = None) -> Any:
        client = session.create_client(SERVICE_NAMES.get(service, service),
                                       region_name=region or self._settings.region,
                                       config=self._config(self._timeout_ms(service)))
        made = await self._stack.enter_async_context(client)
        # What a client loads (models, endpoint rules) lives as long as the process: keep it
        # out of the garbage collector's passes, which otherwise walk it again and again under
        # load (a quarter of the hit path's time).
        gc.freeze()
        return made

    async def client(self, service: str, region: str | None = None) -> Any:
        """The daemon's own client of ``service`` in ``region`` (None: the daemon's region),
        created on first use; raises ``ApiError`` (400 ``InvalidParameterValue`` for a region
        where AWS does not offer the service)."""
        name = f"{service}@{region}" if region else service
        if region and region not in self._regions:
            # Only regions botocore's endpoint data lists for the service: a typo or a made-up
            # region is refused before any call, and the clients stay bounded by that list.
            if region not in await self._known_regions(service):
                raise ApiError(400, "InvalidParameterValue", f"the ARN names the region "
                               f"{region[:32]!r}, where AWS offers no {service} endpoint")
            self._regions.add(region)
        try:
            return await once(self._clients, name,
                              lambda: self._new_client(self._session, service, region))
        except Exception as exc:
            raise translate(exc) from None

    async def _known_regions(self, service: str) -> frozenset[str]:
        known = self._known.get(service)
        if known is None:
            regions: set[str] = set()
            for partition in self._session.get_available_partitions():
                regions.update(await self._session.get_available_regions(
                    SERVICE_NAMES.get(service, service), partition))
            known = self._known[service] = frozenset(regions)
        return known

    async def warm(self, services: Iterable[str]) -> None:
        """Create these services' clients now; raises ``ApiError`` (no region, bad config)."""
        for service in services:
            await self.client(service)

    async def close(self) -> None:
        await self._stack.aclose()

    async def check_identity(self) -> None:
        """STS GetCallerIdentity (``validate_credentials``); raises ``ApiError``."""
        try:
            await (await self.client("sts")).get_caller_identity()
        except Exception as exc:
            raise translate(exc) from None

    async def _assume(self, role: str) -> Metadata:
        """AssumeRole: a refusal is 403 (as the Agent answers), a transient failure is itself."""
        started = time.perf_counter()
        kind = "success"
        try:
            sts = await self.client("sts")
            response = await sts.assume_role(RoleArn=role, RoleSessionName=SESSION_NAME)
        except Exception as exc:
            error = translate(exc)
            kind = outcome_kind(error)
            if not error.transient and isinstance(exc, ClientError):
                error = ApiError(403, "AccessDeniedException",
                                 f"the role {role} could not be assumed ({error.code})")
            raise error from None
        finally:
            self.metrics.observe_call("sts", "AssumeRole", kind, time.perf_counter() - started)
            if logs.debug_on():
                logs.debug("upstream call", api="assume_role", name=role,
                           ms=round((time.perf_counter() - started) * 1000, 2))
        found = response["Credentials"]
        expiry = found["Expiration"]
        return {"access_key": found["AccessKeyId"], "secret_key": found["SecretAccessKey"],
                "token": found["SessionToken"],
                "expiry_time": expiry.isoformat() if isinstance(expiry, datetime) else str(expiry)}

    async def call(self, service: str, api: str, label: str, role: str | None = None,
                   region: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """``api`` (snake case) on ``service``, in ``region`` (None: the daemon's); raises what
        botocore raises (``translate`` it). ``label`` is the log-safe name of what is asked
        (never a value)."""
        client = await self.client(service, region)
        if role is not None:
            client = await self.roles.client(service, role, region)
        started = time.perf_counter()
        outcome, kind = "ok", "success"
        try:
            response: dict[str, Any] = await getattr(client, api)(**kwargs)
            return response
        except BaseException as exc:
            error = translate(exc) if isinstance(exc, Exception) else None
            outcome = error.code if error is not None else type(exc).__name__
            kind = outcome_kind(error)
            if isinstance(exc, ClientError) and exc.response.get(
                    "ResponseMetadata", {}).get("HTTPStatusCode") == 304:
                kind = "not_modified"  # an ETag revalidation: the object is unchanged
            raise
        finally:
            operation = "".join(part.title() for part in api.split("_"))
            self.metrics.observe_call(service, operation, kind, time.perf_counter() - started)
            if logs.debug_on():
                logs.debug("upstream call", api=api, name=label, outcome=outcome,
                           ms=round((time.perf_counter() - started) * 1000, 2))
