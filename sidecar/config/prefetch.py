"""The prefetch list syntax (``PARAMETERS_SECRETS_EXTENSION_PREFETCH``).

A comma-separated list of items, each ``ssm:<name>``, ``secret:<id>``, ``path:<path>`` (a path
read) or ``s3:<bucket>/<key>``, optionally followed by ``?`` and the same query keys the HTTP
API takes (``roleArn`` included), for example::

    ssm:/app/db/host,ssm:/app/db/password?withDecryption=true,ssm:/app/flag?label=prod,
    secret:prod/db,secret:prod/api?versionStage=AWSPREVIOUS,path:/app/config/?recursive=true,
    s3:my-bucket/config/app.json,secret-tag:Environment,secret-tag:Team?roleArn=<role ARN>

Each item becomes exactly the cache key a later HTTP read of it builds, so that read is a hit.
``secret-tag:<tag key>`` is every secret carrying that tag key (the Agent's ``filter_tags``).
No parameter name, secret name, tag key or ARN can hold a comma, so the list needs no escaping.
"""

from __future__ import annotations

from sidecar.core.errors import ApiError
from sidecar.core.key import Key
from sidecar.core.query import role_of, split_query
from sidecar.core.reads import parameter_read, path_read, s3_read, secret_read

PrefetchItem = Key
MAX_ITEMS = 1000


class PrefetchSyntaxError(ValueError):
    pass


TagItem = tuple[str, str | None]  # a tag key, and the role to list and read with
MAX_TAG_KEY_CHARS = 128  # Secrets Manager's limit on a tag key


def parse_prefetch(raw: str) -> tuple[tuple[Key, ...], tuple[TagItem, ...]]:
    """The keys to prefetch, and the tag keys whose secrets to prefetch."""
    keys: dict[Key, None] = {}
    tags: dict[TagItem, None] = {}
    for position, item in enumerate(raw.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        kind, sep, rest = item.partition(":")
        if not sep or kind not in ("ssm", "secret", "path", "s3", "secret-tag"):
            raise PrefetchSyntaxError(
                f"item {position} ({item[:80]!r}) must start with 'ssm:', 'secret:', 'path:', "
                "'s3:' or 'secret-tag:'"
            )
        target, _, query = rest.partition("?")
        if not target:
            raise PrefetchSyntaxError(f"item {position} ({item[:80]!r}) has no name")
        if kind == "secret-tag":
            tags[_tag_item(position, item, target, query)] = None
            continue
        try:
            # The name is percent-decoded like any query value (no valid name holds a "%").
            if kind == "s3":
                bucket, _, object_key = target.partition("/")
                target = f"{bucket}&key={object_key}"
            first = {"ssm": "name", "secret": "secretId", "path": "path", "s3": "bucket"}[kind]
            pairs = split_query(f"{first}={target}&{query}")
            if any(name in ("refreshNow", "maxAge", "transform", "jsonKey") for name, _ in pairs):
                raise PrefetchSyntaxError(f"item {position}: only selectors have a meaning here")
            parse = {"ssm": parameter_read, "secret": secret_read, "path": path_read,
                     "s3": s3_read}[kind]
            read = parse(pairs)
        except ApiError as exc:
            raise PrefetchSyntaxError(f"item {position} ({item[:80]!r}): {exc.message}") from None
        keys[read.key] = None
    if len(keys) + len(tags) > MAX_ITEMS:
        raise PrefetchSyntaxError(f"{len(keys) + len(tags)} items; at most {MAX_ITEMS} are "
                                  "accepted")
    return tuple(keys), tuple(tags)


def _tag_item(position: int, item: str, target: str, query: str) -> TagItem:
    try:
        pairs = split_query(f"tag={target}&{query}")
        found = dict(pairs)
        unknown = [name for name, _ in pairs if name not in ("tag", "roleArn")]
        if unknown or len(found) != len(pairs):
            raise PrefetchSyntaxError(f"item {position} ({item[:80]!r}): a secret-tag item takes "
                                      "only roleArn")
        if len(found["tag"]) > MAX_TAG_KEY_CHARS:
            raise PrefetchSyntaxError(f"item {position}: a tag key is at most "
                                      f"{MAX_TAG_KEY_CHARS} characters")
        return found["tag"], role_of(found)
    except ApiError as exc:
        raise PrefetchSyntaxError(f"item {position} ({item[:80]!r}): {exc.message}") from None
