"""Local mode (``--local FILE``, README "Local mode (no AWS)"): the ``Source`` that answers from
a file instead of AWS, below the cache, so every read shape, transform, group read, metric and
prefetch works as it does against AWS. No AWS call is made, and no credentials or region are
needed.

The answers are AWS's (rendered by ``shapes`` as an AWS answer is) and so are the errors: the
same codes and messages, ``item=True`` on AWS's word on one id. The file is read again when it
changes (checked at most once a second, when a fetch needs it); an invalid edit keeps the last
good content and is reported once, never with a value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sidecar.aws.errors import item_error, outcome_kind
from sidecar.aws.identity import parameter_identity
from sidecar.aws.local_path import path_answer
from sidecar.aws.local_secrets import not_found, reference_document, secret_document
from sidecar.aws.s3 import Meta, NotModified, too_large
from sidecar.aws.shapes import BatchAnswer, render_parameter, render_secret
from sidecar.config.local_data import (
    EMPTY,
    LocalData,
    LocalFileError,
    Parameter,
    ParameterVersion,
    stat_signature,
)
from sidecar.config.local_file import load
from sidecar.core import logs
from sidecar.core.errors import ApiError
from sidecar.core.key import S3, SECRETS, SSM, Key
from sidecar.core.metrics import Metrics
from sidecar.core.query import SECRET_REFERENCE
from sidecar.core.reads import selected

CHECK_SECS = 1.0  # the file is looked at no more often than this
NOT_FOUND_CODES = ("ParameterNotFound", "ParameterVersionNotFound")


class LocalUpstream:
    """A ``Source`` serving the file at ``path``; see the module's docstring."""

    def __init__(self, path: str, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.metrics = metrics or Metrics()
        self._clock = clock
        # SecureString read without decryption: an opaque stand-in for AWS's ciphertext, the
        # same for the same value within this process, and telling nothing of the value.
        self._cipher_key = os.urandom(32)
        self._checked = clock()
        try:
            self._data = load(path)
            self._watched, self._seen = self._data.files, self._data.signature
        except LocalFileError as exc:  # checked at start; changed since: serve nothing yet
            logs.error("local file invalid; serving nothing until it is fixed", error=str(exc))
            self._data, self._watched, self._seen = EMPTY, exc.files, stat_signature(exc.files)

    # -- the Source interface -------------------------------------------------------------
    async def start(self, services: Iterable[str] = (SSM, SECRETS)) -> None:
        data = self._data
        logs.info("local mode: answering from a file, no AWS calls", file=self.path,
                  parameters=len(data.parameters), secrets=len(data.secrets),
                  objects=len(data.objects))

    async def close(self) -> None:
        pass

    async def check_identity(self) -> None:
        pass  # no credentials to check

    async def fetch(self, key: Key) -> bytes:
        data = self._current()
        if key.service == SSM:
            with self._call(SSM, "get_parameter", key.describe()):
                return render_parameter(self._parameter(data, key))
        with self._call(SECRETS, "get_secret_value", key.describe()):
            return render_secret(secret_document(data, key))

    async def fetch_parameters_and_errors(self, keys: list[Key]) -> BatchAnswer:
        """As GetParameters: a name not found is listed (``ParameterNotFound``, the error
        ``ssm.get_parameters`` makes of AWS's ``InvalidParameters``); any other error is left
        out, so that the key is fetched alone and answered with that error."""
        data = self._current()
        found: dict[Key, bytes] = {}
        errors: dict[Key, ApiError] = {}
        with self._call(SSM, "get_parameters", f"{len(keys)} names"):
            for key in keys:
                try:
                    found[key] = render_parameter(self._parameter(data, key))
                except ApiError as exc:
                    if exc.code in NOT_FOUND_CODES:
                        errors[key] = not_found("ParameterNotFound", f"parameter "
                                                f"{key.ssm_name()[:256]!r} not found")
        return found, errors

    async def fetch_secrets_and_errors(self, keys: list[Key]) -> BatchAnswer:
        data = self._current()
        found: dict[Key, bytes] = {}
        errors: dict[Key, ApiError] = {}
        with self._call(SECRETS, "batch_get_secret_value", f"{len(keys)} ids"):
            for key in keys:
                try:
                    found[key] = render_secret(secret_document(data, key))
                except ApiError as exc:  # as an entry of BatchGetSecretValue's Errors
                    errors[key] = item_error(exc.code, exc.message)
        return found, errors

    async def fetch_path(self, key: Key) -> tuple[bytes, dict[Key, bytes]]:
        data = self._current()
        with self._call(SSM, "get_parameters_by_path", key.describe()):
            return path_answer(data, key, self._parameter_document)

    async def fetch_object(self, key: Key, etag: str | None, limit: int) -> tuple[bytes, Meta]:
        data = self._current()
        options = dict(key.options)
        bucket, name = options["bucket"], options["key"]
        with self._call(S3, "get_object", key.describe()):
            if bucket not in data.buckets:
                raise not_found("NoSuchBucket", "The specified bucket does not exist")
            found = data.objects.get((bucket, name))
            if found is None:
                raise not_found("NoSuchKey", "The specified key does not exist.")
            if key.version_id is not None and key.version_id != found.version_id:
                raise not_found("NoSuchVersion", "The specified version does not exist.")
            if etag is not None and etag == found.etag:
                raise NotModified()
            if len(found.body) > limit:
                raise too_large(limit)
        modified = found.modified.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return found.body, (("Content-Type", found.content_type), ("ETag", found.etag),
                            ("Last-Modified", modified))

    async def list_tagged(self, tag: str, role: str | None, limit: int) -> list[str]:
        data = self._current()
        with self._call(SECRETS, "list_secrets", f"tag-key {tag}"):
            return [secret.name for secret in data.secrets.values() if tag in secret.tags][:limit]

    # -- the file -------------------------------------------------------------------------
    def _current(self) -> LocalData:
        """The content to answer from, read again first if the file changed (looked at no
        more than once every ``CHECK_SECS``)."""
        now = self._clock()
        if now - self._checked < CHECK_SECS:
            return self._data
        self._checked = now
        if stat_signature(self._watched) == self._seen:
            return self._data
        try:
            data = load(self.path)
        except LocalFileError as exc:
            # One line per change: the next look finds these same files unchanged.
            self._watched, self._seen = exc.files, stat_signature(exc.files)
            logs.warn("local file invalid; still answering from its last good content",
                      error=str(exc))
            return self._data
        self._data, self._watched, self._seen = data, data.files, data.signature
        logs.info("local file read again", file=self.path, parameters=len(data.parameters),
                  secrets=len(data.secrets), objects=len(data.objects))
        return data

    @contextmanager
    def _call(self, service: str, api: str, label: str) -> Iterator[None]:
        """Counted and logged as ``clients.call`` counts an AWS call (its operation name), so
        that the metrics show what the file answered; ``label`` is log-safe."""
        started = time.perf_counter()
        outcome, kind = "ok", "success"
        try:
            yield
        except NotModified:
            outcome, kind = "NotModified", "not_modified"
            raise
        except ApiError as exc:
            outcome, kind = exc.code, outcome_kind(exc)
            raise
        finally:
            seconds = time.perf_counter() - started
            operation = "".join(part.title() for part in api.split("_"))
            self.metrics.observe_call(service, operation, kind, seconds)
            if logs.debug_on():
                logs.debug("upstream call", api=api, name=label, outcome=outcome,
                           ms=round(seconds * 1000, 2), source="local file")

    # -- parameters -----------------------------------------------------------------------
    def _parameter(self, data: LocalData, key: Key) -> dict[str, Any]:
        """GetParameter's ``Parameter`` for ``key``; raises AWS's errors."""
        if not (key.version or key.label):
            # ``name:3`` or ``name:label`` in a single read's name, as GetParameter takes it.
            parsed = selected(key.name, key.with_decryption, key.role)
            key = key._replace(name=parsed.name, version=parsed.version, label=parsed.label)
        if key.name.startswith(SECRET_REFERENCE):
            return reference_document(data, key)
        found = data.parameters.get(parameter_identity(key.name))
        version: ParameterVersion | None = None
        if found is not None and key.version:
            version = next((v for v in found.versions if str(v.version) == key.version), None)
            if version is None:
                raise not_found("ParameterVersionNotFound", f"Systems Manager could not find "
                                f"version {key.version} of {key.name}. Verify the version "
                                "and try again.")
        elif found is not None and key.label:
            version = next((v for v in found.versions if key.label in v.labels), None)
        elif found is not None:
            version = found.versions[-1]
        if found is None or version is None:
            raise not_found("ParameterNotFound", f"Parameter {key.ssm_name()} not found.")
        return self._parameter_document(found, version, key.with_decryption,
                                        key.version or key.label)

    def _parameter_document(self, found: Parameter, version: ParameterVersion, decrypt: bool,
                            selector: str | None = None) -> dict[str, Any]:
        """In the order of AWS's model, as botocore parses it (``shapes`` adds the nulls)."""
        value = version.value
        if found.type == "SecureString" and not decrypt:
            value = self._ciphertext(found.name, version)
        document: dict[str, Any] = {"Name": found.name, "Type": found.type, "Value": value,
                                    "Version": version.version}
        if selector:
            document["Selector"] = f":{selector}"
        document.update(LastModifiedDate=version.modified, ARN=found.arn,
                        DataType=found.data_type)
        return document

    def _ciphertext(self, name: str, version: ParameterVersion) -> str:
        digest = hmac.new(self._cipher_key, f"{name}\0{version.version}\0{version.value}"
                          .encode(), hashlib.sha256).digest()
        return base64.b64encode(b"\x01\x02\x02\x00" + digest).decode()  # KMS blobs' first bytes
