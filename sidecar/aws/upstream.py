"""AWS calls: one aiobotocore client per service, created once, closed at shutdown.

Maps a ``Key`` to GetParameter / GetSecretValue (and the batch APIs for prefetch), renders the
AWS answer to the response body once, at fetch time, and turns every failure into ``ApiError``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
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

from sidecar import __version__
from sidecar.aws.roles import SESSION_NAME, Metadata, RoleClients, once
from sidecar.config.settings import Settings
from sidecar.core import logs
from sidecar.core.errors import ApiError
from sidecar.core.key import S3, SECRETS, SSM, Key
from sidecar.core.metrics import Metrics

# Attempts in all (botocore's ``total_max_attempts``; its ``max_attempts`` counts retries).
TOTAL_ATTEMPTS = 3
SSM_BATCH = 10  # GetParameters takes at most 10 names
PATH_PAGE = 10  # GetParametersByPath returns at most 10 a page
MAX_PATH_PAGES = 100
MAX_PATH_BYTES = 4 * 1024 * 1024
SECRETS_BATCH = 20  # BatchGetSecretValue takes at most 20 ids
LIST_PAGE = 100  # ListSecrets returns at most 100 a page
MAX_LIST_PAGES = 100
_THROTTLING = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException",
    "ProvisionedThroughputExceededException", "SlowDown", "EC2ThrottledException",
})
_SERVICE_NAMES = {SSM: "ssm", SECRETS: "secretsmanager", S3: "s3"}
TRIMMED_DATA = Path(__file__).with_name("botocore_data")  # see scripts/trim_botocore_data.py


def rfc3339(value: object) -> object:
    """``2024-05-01T12:00:00.123Z`` for a datetime; anything else unchanged."""
    if not isinstance(value, datetime):
        return value
    utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


# The AWS extension always sends these, null when empty, and clients test for the key.
_PARAMETER_NULLS = ("Selector", "SourceResult")
_SECRET_NULLS = ("SecretString", "SecretBinary")


def shape_parameter(parameter: dict[str, Any]) -> dict[str, Any]:
    """One parameter as the extension renders it: RFC 3339 dates, null fields present."""
    shaped = {field: rfc3339(value) for field, value in parameter.items()}
    for field in _PARAMETER_NULLS:
        shaped.setdefault(field, None)
    return shaped


def shape_secret(secret: dict[str, Any]) -> dict[str, Any]:
    """One secret value as the extension renders it: binary as base64, null fields present."""
    shaped: dict[str, Any] = {}
    for field, value in secret.items():
        if field == "ResponseMetadata":
            continue
        if field == "SecretBinary" and isinstance(value, bytes | bytearray):
            value = base64.b64encode(value).decode()
        shaped[field] = rfc3339(value)
    for field in _SECRET_NULLS:
        shaped.setdefault(field, None)
    return shaped


def render_parameter(parameter: dict[str, Any]) -> bytes:
    """The body of ``/systemsmanager/parameters/get``: AWS's GetParameter JSON."""
    return _dumps({"Parameter": shape_parameter(parameter), "ResultMetadata": {}})


def render_secret(secret: dict[str, Any]) -> bytes:
    """The body of ``/secretsmanager/get``: AWS's GetSecretValue JSON, binary as base64."""
    return _dumps({**shape_secret(secret), "ResultMetadata": {}})


def _clean_message(code: str, message: str, status: int) -> str:
    """AWS's message, unless the body was not AWS's JSON (an HTML page from a proxy)."""
    if "<" in message or "\n" in message or len(message) > 1024 or message.isdigit():
        return f"AWS answered HTTP {status} with a body that is not an AWS error"
    return message


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
        message = _clean_message(code, str(error.get("Message") or code), status)
        # AWS's JSON protocol answers every client error with 400; moto and proxies sometimes
        # use 404 or 403, so the code decides, and only a real 5xx keeps its status.
        if status < 500:
            status = 400
        return ApiError(status, code, message, transient=status >= 500 or code in _THROTTLING)
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
        return ApiError(500, "InternalFailure", "no AWS credentials found in the credential chain",
                        transient=True)
    if isinstance(exc, NoRegionError):
        return ApiError(500, "InternalFailure", "no AWS region configured: set AWS_REGION")
    if isinstance(exc, BotoCoreError):
        return ApiError(500, "InternalFailure", f"AWS SDK error: {type(exc).__name__}")
    return ApiError(500, "InternalFailure", f"internal error: {type(exc).__name__}")


class Upstream:
    """Owns the AWS clients. ``start`` creates them; every call awaits them if still starting."""

    def __init__(self, settings: Settings, session: AioSession | None = None,
                 metrics: Metrics | None = None) -> None:
        self._settings = settings
        self.metrics = metrics or Metrics()
        self._session = _with_trimmed_data(session or get_session())
        if settings.credentials_file:
            from sidecar.aws.file_credentials import FileCredentialProvider

            self._session.register_component(
                "credential_provider", FileCredentialProvider(settings.credentials_file))
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._ready: asyncio.Future[None] | None = None
        self._sts: dict[str, asyncio.Future[Any]] = {}
        self.roles = RoleClients(self._assume, lambda: _with_trimmed_data(AioSession()),
                                 self._new_client, settings.max_roles)

    def _config(self, timeout_ms: int) -> AioConfig:
        timeouts: dict[str, float] = {}
        if timeout_ms > 0:
            timeouts = {"connect_timeout": timeout_ms / 1000, "read_timeout": timeout_ms / 1000}
        return AioConfig(
            max_pool_connections=self._settings.max_connections,
            retries={"mode": "standard", "total_max_attempts": TOTAL_ATTEMPTS},
            user_agent_extra=f"parameters-secrets-sidecar/{__version__}",
            **timeouts,
        )

    def _ready_future(self) -> asyncio.Future[None]:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
        return self._ready

    async def start(self) -> None:
        """Create both clients. Safe to call once; calls made before wait for it."""
        ready = self._ready_future()
        try:
            for service in (SSM, SECRETS, S3):
                self._clients[service] = await self._new_client(self._session, service)
        except BaseException as exc:
            ready.set_exception(translate(exc))
            ready.exception()  # marks it retrieved; readers re-raise it themselves
            raise
        ready.set_result(None)

    async def close(self) -> None:
        await self._stack.aclose()

    def _timeout_ms(self, service: str) -> int:
        return {SSM: self._settings.ssm_timeout_ms, S3: self._settings.s3_timeout_ms}.get(
            service, self._settings.secrets_timeout_ms)

    async def _new_client(self, session: AioSession, service: str) -> Any:
        client = session.create_client(_SERVICE_NAMES.get(service, service),
                                       region_name=self._settings.region,
                                       config=self._config(self._timeout_ms(service)))
        return await self._stack.enter_async_context(client)

    async def _sts_client(self) -> Any:
        """STS with the daemon's own credentials, created on first use (roles, identity)."""
        return await once(self._sts, "sts", lambda: self._new_client(self._session, "sts"))

    async def check_identity(self) -> None:
        """STS GetCallerIdentity (``validate_credentials``); raises ``ApiError``."""
        try:
            await (await self._sts_client()).get_caller_identity()
        except Exception as exc:
            raise translate(exc) from None

    async def _assume(self, role: str) -> Metadata:
        """AssumeRole: a refusal is 403 (as the Agent answers), a transient failure is itself."""
        started = time.perf_counter()
        kind = "success"
        try:
            sts = await self._sts_client()
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

    async def _client(self, service: str) -> Any:
        await asyncio.shield(self._ready_future())
        return self._clients[service]

    async def _call(self, service: str, api: str, label: str, role: str | None = None,
                    **kwargs: Any) -> dict[str, Any]:
        client = await self._client(service)
        if role is not None:
            client = await self.roles.client(service, role)
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

    async def fetch(self, key: Key) -> bytes:
        """One key's body, rendered; raises ``ApiError``."""
        try:
            if key.service == SSM:
                response = await self._call(
                    SSM, "get_parameter", key.describe(), key.role,
                    Name=key.ssm_name(), WithDecryption=key.with_decryption,
                )
                return render_parameter(response["Parameter"])
            kwargs: dict[str, str] = {"SecretId": key.name}
            if key.version_id:
                kwargs["VersionId"] = key.version_id
            if key.version_stage:
                kwargs["VersionStage"] = key.version_stage
            return render_secret(
                await self._call(SECRETS, "get_secret_value", key.describe(), key.role, **kwargs)
            )
        except Exception as exc:
            raise translate(exc) from None

    async def fetch_parameters(self, keys: list[Key]) -> dict[Key, bytes]:
        found, _ = await self.fetch_parameters_and_errors(keys)
        return found

    async def fetch_parameters_and_errors(
            self, keys: list[Key]) -> tuple[dict[Key, bytes], dict[Key, ApiError]]:
        """GetParameters for up to 10 keys sharing ``with_decryption``; found ones only.

        The keys must have distinct names (see ``batches``): an answer is matched back to its
        key by name or ARN alone, since not every implementation echoes the ``Selector``.
        """
        wanted = {parameter_identity(key.name): key for key in keys}
        response = await self._call(
            SSM, "get_parameters", f"{len(keys)} names", keys[0].role,
            Names=[key.ssm_name() for key in keys], WithDecryption=keys[0].with_decryption,
        )
        found: dict[Key, bytes] = {}
        for parameter in response.get("Parameters", []):
            key = wanted.get(parameter_identity(str(parameter.get("Name", ""))))
            if key is None or not _selector_matches(key, parameter):
                continue
            found[key] = render_parameter(parameter)
        invalid = set(response.get("InvalidParameters", []))
        errors = {key: ApiError(400, "ParameterNotFound", f"parameter {key.ssm_name()[:256]!r} "
                                "not found") for key in keys
                  if key not in found and key.ssm_name() in invalid}
        return found, errors

    async def fetch_secrets(self, keys: list[Key]) -> dict[Key, bytes]:
        """BatchGetSecretValue for up to 20 plain (no version selector) keys; found ones only."""
        found, _ = await self.fetch_secrets_and_errors(keys)
        return found

    async def fetch_secrets_and_errors(
            self, keys: list[Key]) -> tuple[dict[Key, bytes], dict[Key, ApiError]]:
        """BatchGetSecretValue; answers by the id asked with, and AWS's error for each id."""
        wanted = {key.name: key for key in keys}
        response = await self._call(
            SECRETS, "batch_get_secret_value", f"{len(keys)} ids", keys[0].role,
            SecretIdList=list(wanted),
        )
        found: dict[Key, bytes] = {}
        for secret in response.get("SecretValues", []):
            for candidate in (secret.get("Name"), secret.get("ARN")):
                if candidate in wanted:
                    found[wanted[candidate]] = render_secret(secret)
        errors: dict[Key, ApiError] = {}
        for error in response.get("Errors", []):
            key = wanted.get(str(error.get("SecretId", "")))
            if key is not None and key not in found:
                code = str(error.get("ErrorCode") or "InternalFailure")
                errors[key] = ApiError(400, code, _clean_message(
                    code, str(error.get("Message") or code), 400), transient=code in _THROTTLING)
        return found, errors

    async def list_tagged(self, tag: str, role: str | None, limit: int) -> list[str]:
        """Names of the secrets carrying the tag key ``tag`` (at most ``limit``): ListSecrets
        with a ``tag-key`` filter, every page. The filter matches by prefix, so each answer's
        own tags are checked for the exact key."""
        kwargs: dict[str, Any] = {"Filters": [{"Key": "tag-key", "Values": [tag]}],
                                  "MaxResults": LIST_PAGE}
        names: list[str] = []
        try:
            for _page in range(MAX_LIST_PAGES):
                response = await self._call(SECRETS, "list_secrets", f"tag-key {tag}", role,
                                            **kwargs)
                for secret in response.get("SecretList", []):
                    tags = {str(pair.get("Key")) for pair in secret.get("Tags") or []}
                    if tag in tags and secret.get("Name"):
                        names.append(str(secret["Name"]))
                token = response.get("NextToken")
                if not token or len(names) >= limit:
                    break
                kwargs["NextToken"] = token
        except Exception as exc:
            raise translate(exc) from None
        return names[:limit]

    async def fetch_object(self, key: Key, etag: str | None,
                           limit: int) -> tuple[bytes, tuple[tuple[str, str], ...]]:
        """GetObject: the bytes and the headers kept with them. With ``etag``, a conditional
        get: an unchanged object raises ``NotModified`` and transfers no body. An object over
        ``limit`` bytes is refused (400 ``ObjectTooLarge``) without reading it."""
        options = dict(key.options)
        kwargs: dict[str, Any] = {"Bucket": options["bucket"], "Key": options["key"]}
        if key.version_id:
            kwargs["VersionId"] = key.version_id
        if etag:
            kwargs["IfNoneMatch"] = etag
        try:
            response = await self._call(S3, "get_object", key.describe(), key.role, **kwargs)
            async with response["Body"] as stream:
                length = int(response.get("ContentLength") or 0)
                if length > limit:
                    raise ApiError(400, "ObjectTooLarge", f"the object is {length} bytes, over "
                                   f"the {limit}-byte limit (PARAMETERS_SECRETS_EXTENSION_S3_"
                                   "MAX_OBJECT_BYTES)")
                # read(n) returns at most n bytes, often fewer: read to the end, bounded.
                chunks: list[bytes] = []
                received = 0
                while True:
                    chunk = await stream.read(65536)
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > limit:
                        raise ApiError(400, "ObjectTooLarge", f"the object is over the "
                                       f"{limit}-byte limit "
                                       "(PARAMETERS_SECRETS_EXTENSION_S3_MAX_OBJECT_BYTES)")
                    chunks.append(chunk)
                body = b"".join(chunks)
                if length and len(body) != length:
                    raise ApiError(502, "UpstreamUnavailable", "S3 sent fewer bytes than it "
                                   "announced", transient=True)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 304:
                raise NotModified() from None
            raise translate(exc) from None
        except (ApiError, NotModified):
            raise
        except Exception as exc:
            raise translate(exc) from None
        meta = [("Content-Type", str(response.get("ContentType") or "application/octet-stream"))]
        if response.get("ETag"):
            meta.append(("ETag", str(response["ETag"])))
        modified = response.get("LastModified")
        if isinstance(modified, datetime):
            meta.append(("Last-Modified", modified.astimezone(UTC).strftime(
                "%a, %d %b %Y %H:%M:%S GMT")))
        return body, tuple(meta)

    async def fetch_path(self, key: Key) -> tuple[bytes, dict[Key, bytes]]:
        """Every page of GetParametersByPath (bounded), and the single-read body of each
        parameter (none with a Label filter, which may pick another version)."""
        options = dict(key.options)
        kwargs: dict[str, Any] = {"Path": key.name, "Recursive": options["recursive"] == "true",
                                  "WithDecryption": key.with_decryption, "MaxResults": PATH_PAGE}
        filters = [{"Key": name, "Option": "Equals", "Values": [options[field]]}
                   for field, name in (("type", "Type"), ("keyId", "KeyId"), ("label", "Label"))
                   if field in options]
        if filters:
            kwargs["ParameterFilters"] = filters
        parameters: list[dict[str, Any]] = []
        size = 0
        try:
            for _page in range(MAX_PATH_PAGES):
                response = await self._call(SSM, "get_parameters_by_path", key.describe(),
                                            key.role, **kwargs)
                for parameter in response.get("Parameters", []):
                    shaped = shape_parameter(parameter)
                    size += len(_dumps(shaped))
                    parameters.append(shaped)
                if size > MAX_PATH_BYTES:
                    raise ApiError(400, "TooManyParameters", f"the parameters under this path "
                                   f"are over {MAX_PATH_BYTES // 1024 // 1024} MB; read a "
                                   "narrower path")
                token = response.get("NextToken")
                if not token:
                    break
                kwargs["NextToken"] = token
            else:
                raise ApiError(400, "TooManyParameters", f"more than {MAX_PATH_PAGES} pages of "
                               f"{PATH_PAGE} parameters under this path; read a narrower path")
        except ApiError:
            raise
        except Exception as exc:
            raise translate(exc) from None
        members: dict[Key, bytes] = {}
        if "label" not in options:
            for shaped in parameters:
                member = Key(SSM, str(shaped.get("Name")), with_decryption=key.with_decryption,
                             role=key.role)
                members[member] = _dumps({"Parameter": shaped, "ResultMetadata": {}})
        return _dumps({"Parameters": parameters, "ResultMetadata": {}}), members


_TAIL = b',"ResultMetadata":{}}'


def member_json(body: bytes, kind: str) -> bytes:
    """A cached single-read body as a group member: the parameter object, or the secret's
    fields without ``ResultMetadata`` (bytes sliced, not re-serialised: we rendered them)."""
    if kind == SSM:
        return body[len(b'{"Parameter":'):-len(_TAIL)]
    return body[:-len(_TAIL)] + b"}"


def parameter_identity(name: str) -> str:
    """The parameter a name or ARN refers to: ``arn:...:parameter/a/b``, ``/a/b`` -> ``a/b``."""
    if name.startswith("arn:") and ":parameter/" in name:
        name = name.split(":parameter/", 1)[1]
    return name.lstrip("/")


def _selector_matches(key: Key, parameter: dict[str, Any]) -> bool:
    """Where AWS echoes the ``Selector``, it must be the one this key asked for."""
    selector = parameter.get("Selector")
    if not selector:
        return True
    wanted = key.version or key.label
    return wanted is not None and selector == f":{wanted}"


def _identity(key: Key) -> str:
    return parameter_identity(key.name) if key.service == SSM else key.name


def outcome_kind(error: ApiError | None) -> str:
    """An upstream call's outcome, in the metrics' vocabulary."""
    if error is None:
        return "cancelled"
    if error.code in _THROTTLING:
        return "throttled"
    if error.code == "UpstreamTimeout":
        return "timeout"
    if error.code == "UpstreamUnavailable":
        return "unavailable"
    if error.status >= 500:
        return "server_error"
    return "client_error"


def _with_trimmed_data(session: AioSession) -> AioSession:
    """Trimmed service models and endpoints first: a quarter of the daemon's memory otherwise."""
    loader = session.get_component("data_loader")
    if str(TRIMMED_DATA) not in loader.search_paths:
        loader.search_paths.insert(0, str(TRIMMED_DATA))
    return session


class NotModified(Exception):
    """A conditional GetObject found the object unchanged (HTTP 304): keep the cached body."""


def batches(keys: Iterable[Key], size: int) -> list[list[Key]]:
    """Groups of at most ``size`` keys, no two in a group for the same item.

    Two keys for one parameter (by name and by ARN, or with different versions) never share a
    GetParameters call, so that every answer matches exactly one key of its call. A group's
    keys share their role and ``withDecryption`` (one call is made with one of each).
    """
    groups: list[list[Key]] = []
    names: list[set[str]] = []
    for key in keys:
        identity = _identity(key)
        for group, taken in zip(groups, names, strict=True):
            if len(group) < size and identity not in taken and group[0].role == key.role \
                    and group[0].with_decryption == key.with_decryption:
                group.append(key)
                taken.add(identity)
                break
        else:
            groups.append([key])
            names.append({identity})
    return groups
