"""Prefetch as the Secrets Manager Agent does it: after an optional random delay, the listed
secrets and every secret carrying one of the listed tag keys, per role, up to a share of the
cache (``cache_buffer_ratio``), so that prefetch never evicts what readers will put there.

The explicit list is claimed at once (a read of one joins its batch); tag keys need a
ListSecrets call first, whose answers are then fetched in BatchGetSecretValue batches under
their names (a read by name is a hit; a read by ARN is a key of its own and fetches once).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from sidecar.aws.source import Source
from sidecar.cache.resolver import Resolver
from sidecar.config.settings import Settings
from sidecar.core import logs
from sidecar.core.errors import ApiError
from sidecar.core.key import SECRETS, Key


def room(settings: Settings) -> int:
    """How many items one role's prefetch may put in the cache."""
    return max(1, int(settings.cache_items * settings.prefetch_buffer_ratio))


def within_room(keys: tuple[Key, ...], limit: int) -> tuple[Key, ...]:
    """The first ``limit`` keys of each role, in the order given."""
    taken: dict[str | None, int] = {}
    kept: list[Key] = []
    for key in keys:
        if taken.get(key.role, 0) < limit:
            taken[key.role] = taken.get(key.role, 0) + 1
            kept.append(key)
    if len(kept) < len(keys):
        logs.warn("prefetch list is over the cache buffer; the rest is not prefetched",
                  kept=len(kept), listed=len(keys), per_role=limit)
    return tuple(kept)


async def prefetch(settings: Settings, resolver: Resolver, upstream: Source,
                   sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """The whole prefetch: jitter (``sleep``, seconds), the explicit list, then the tag keys."""
    if settings.prefetch_jitter_secs:
        await sleep(random.uniform(0, settings.prefetch_jitter_secs))
    limit = room(settings)
    keys = within_room(settings.prefetch, limit)
    if keys:
        await resolver.prefetch(keys)
    if settings.prefetch_tags:
        await prefetch_tags(settings, resolver, upstream, keys, limit)


async def prefetch_tags(settings: Settings, resolver: Resolver, upstream: Source,
                        already: tuple[Key, ...], limit: int) -> None:
    used: dict[str | None, int] = {}
    for key in already:
        used[key.role] = used.get(key.role, 0) + 1
    found: dict[Key, None] = {}
    for tag, role in settings.prefetch_tags:
        left = limit - used.get(role, 0)
        if left <= 0:
            logs.warn("prefetch by tag skipped: the cache buffer is full", tag=tag)
            continue
        try:
            names = await upstream.list_tagged(tag, role, left)
        except ApiError as exc:
            logs.warn("prefetch by tag failed", tag=tag, error=exc.code)
            continue
        fresh = [Key(SECRETS, name, role=role) for name in names]
        fresh = [key for key in fresh if key not in found and key not in already]
        used[role] = used.get(role, 0) + len(fresh)
        found.update(dict.fromkeys(fresh))
        logs.info("prefetch by tag", tag=tag, secrets=len(names))
    if found:
        await resolver.prefetch(tuple(found))
