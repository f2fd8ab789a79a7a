"""The prefetch list syntax (``PARAMETERS_SECRETS_EXTENSION_PREFETCH``).

A comma-separated list of items, each ``ssm:<name>`` or ``secret:<id>``, optionally followed by
``?`` and the same query keys the HTTP API takes, for example::

    ssm:/app/db/host,ssm:/app/db/password?withDecryption=true,ssm:/app/flag?label=prod,
    secret:prod/db,secret:prod/api?versionStage=AWSPREVIOUS

Each item becomes exactly the cache key a later HTTP read of it builds, so that read is a hit.
No parameter name, secret name or ARN can hold a comma, so the list needs no escaping.
"""

from __future__ import annotations

from sidecar.errors import ApiError
from sidecar.key import Key
from sidecar.query import parameter_read, secret_read, split_query

PrefetchItem = Key
MAX_ITEMS = 1000


class PrefetchSyntaxError(ValueError):
    pass


def parse_prefetch(raw: str) -> tuple[Key, ...]:
    keys: dict[Key, None] = {}
    for position, item in enumerate(raw.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        kind, sep, rest = item.partition(":")
        if not sep or kind not in ("ssm", "secret"):
            raise PrefetchSyntaxError(
                f"item {position} ({item[:80]!r}) must start with 'ssm:' or 'secret:'"
            )
        target, _, query = rest.partition("?")
        if not target:
            raise PrefetchSyntaxError(f"item {position} ({item[:80]!r}) has no name")
        try:
            # The name is percent-decoded like any query value (no valid name holds a "%").
            pairs = split_query(f"{'name' if kind == 'ssm' else 'secretId'}={target}&{query}")
            if any(name == "refreshNow" for name, _ in pairs):
                raise PrefetchSyntaxError(f"item {position}: refreshNow has no meaning here")
            read = parameter_read(pairs) if kind == "ssm" else secret_read(pairs)
        except ApiError as exc:
            raise PrefetchSyntaxError(f"item {position} ({item[:80]!r}): {exc.message}") from None
        keys[read.key] = None
    if len(keys) > MAX_ITEMS:
        raise PrefetchSyntaxError(f"{len(keys)} items; at most {MAX_ITEMS} are accepted")
    return tuple(keys)
