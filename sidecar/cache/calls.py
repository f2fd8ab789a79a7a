"""Every read shape as a ``Call``: the keys one AWS call answers, and how to make it.

The pipeline runs every call the same way (claims, deadline, slot, matching, errors, storing);
these adapters only say which API to call and how its answer maps to keys:

- ``single``: GetParameter or GetSecretValue for one key; a path read (its body, and each
  parameter's single-read body as ``extra``); an S3 object (revalidated by its ETag).
- ``batch``: GetParameters (10) or BatchGetSecretValue (20); ``plan`` groups any keys into the
  fewest calls AWS's limits allow, for group reads and prefetch alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from sidecar.aws.identity import batches
from sidecar.aws.regions import batch_region
from sidecar.aws.s3 import Meta, NotModified
from sidecar.aws.secrets import BATCH as SECRETS_BATCH
from sidecar.aws.source import Source
from sidecar.aws.ssm import BATCH as SSM_BATCH
from sidecar.cache.store import Entry
from sidecar.core.errors import ApiError
from sidecar.core.key import S3, SECRETS, SSM, SSM_PATH, Key


@dataclass(slots=True)
class Outcome:
    """What one call answered: bodies (with headers kept beside them) by key, AWS's word on
    the ids it did not return, and ``extra`` keys learnt on the way (a path's members). A key
    of the call in neither ``found`` nor ``errors`` was not matched: it is fetched alone."""

    found: dict[Key, tuple[bytes, Meta]] = field(default_factory=dict)
    errors: dict[Key, ApiError] = field(default_factory=dict)
    extra: dict[Key, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Call:
    service: str  # whose timeout and connection slots apply (``Key.limits``)
    keys: tuple[Key, ...]
    make: Callable[[], Awaitable[Outcome]]
    # A call naming one id: its definite error is AWS's word on that id (``ApiError.item``).
    names_one: bool = True


def single(upstream: Source, key: Key, held: Entry | None, s3_limit: int) -> Call:
    """The call that fetches ``key`` alone. ``held`` is the cached entry (S3 revalidates it)."""

    async def make() -> Outcome:
        if key.service == SSM_PATH:
            body, members = await upstream.fetch_path(key)
            return Outcome({key: (body, ())}, extra=members)
        if key.service == S3:
            etag = dict(held.meta).get("ETag") if held is not None else None
            try:
                return Outcome({key: await upstream.fetch_object(key, etag, s3_limit)})
            except NotModified:
                assert held is not None
                return Outcome({key: (held.body, held.meta)})
        return Outcome({key: (await upstream.fetch(key), ())})

    return Call(key.limits(), (key,), make)


def batch(upstream: Source, keys: list[Key]) -> Call:
    """One GetParameters or BatchGetSecretValue call for ``keys`` (see ``plan``)."""

    async def make() -> Outcome:
        if keys[0].service == SSM:
            found, errors = await upstream.fetch_parameters_and_errors(keys)
        else:
            found, errors = await upstream.fetch_secrets_and_errors(keys)
        return Outcome({key: (body, ()) for key, body in found.items()}, errors)

    return Call(keys[0].limits(), tuple(keys), make, names_one=False)


def batchable(key: Key) -> bool:
    """Parameters, and secrets without a version selector (BatchGetSecretValue takes none)."""
    return key.service == SSM or (key.service == SECRETS and not (
        key.version_id or key.version_stage))


def plan(upstream: Source, keys: Iterable[Key], peek: Callable[[Key], Entry | None],
         s3_limit: int) -> list[Call]:
    """The fewest calls that fetch ``keys``: batches of parameters sharing ``withDecryption``
    and role, batches of plain secrets sharing a role, and one call for each other key."""
    keys = list(keys)
    calls: list[Call] = []
    for service, size in ((SSM, SSM_BATCH), (SECRETS, SECRETS_BATCH)):
        wanted = (k for k in keys if k.service == service and batchable(k))
        region = batch_region(getattr(upstream, "home_region", None))
        for group in batches(wanted, size, region):
            calls.append(batch(upstream, group))
    calls += [single(upstream, key, peek(key), s3_limit) for key in keys if not batchable(key)]
    return calls
