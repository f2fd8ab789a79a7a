"""Which answer of a batch call answers which id: AWS's identity rules, in one place.

- A parameter is named by its name (with or without the leading ``/``) or its ARN
  (``arn:aws:ssm:<region>:<account>:parameter/<name>``), optionally with a ``:version`` or
  ``:label`` selector. GetParameters echoes the ``Selector`` on some implementations only.
- A secret is named by its name, its full ARN, or a partial ARN: the full ARN without the
  ``-`` and six random characters Secrets Manager appends (AWS Secrets Manager User Guide,
  "Finding a secret from a partial ARN").
Whatever a batch answer cannot be matched to is fetched alone, never reported as not found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sidecar.core.key import SSM, Key

SECRET_ARN_SUFFIX = 7  # "-" and six characters


def parameter_identity(name: str) -> str:
    """The parameter a name or ARN refers to: ``arn:...:parameter/a/b``, ``/a/b`` -> ``a/b``."""
    if name.startswith("arn:") and ":parameter/" in name:
        name = name.split(":parameter/", 1)[1]
    return name.lstrip("/")


def selector_matches(key: Key, parameter: dict[str, Any]) -> bool:
    """Where AWS echoes the ``Selector``, it must be the one this key asked for."""
    selector = parameter.get("Selector")
    if not selector:
        return True
    wanted = key.version or key.label
    return wanted is not None and selector == f":{wanted}"


def secret_ids(secret: dict[str, Any]) -> tuple[str, ...]:
    """Every id that names this secret: its name, its ARN, and its ARN without the suffix."""
    ids = [str(secret[field]) for field in ("Name", "ARN") if secret.get(field)]
    arn = str(secret.get("ARN") or "")
    if len(arn) > SECRET_ARN_SUFFIX and arn[-SECRET_ARN_SUFFIX] == "-":
        ids.append(arn[:-SECRET_ARN_SUFFIX])
    return tuple(ids)


def arn_region(name: str) -> str | None:
    """The region field of an ARN, or None for a plain name."""
    if not name.startswith("arn:"):
        return None
    fields = name.split(":", 5)
    return fields[3] if len(fields) == 6 else None


def identity(key: Key) -> str:
    return parameter_identity(key.name) if key.service == SSM else key.name


def batches(keys: Iterable[Key], size: int,
            region: Callable[[str], str | None] = arn_region) -> list[list[Key]]:
    """Groups of at most ``size`` keys, no two in a group for the same item.

    Two keys for one parameter (by name and by ARN, or with different versions) never share a
    GetParameters call, so that every answer matches exactly one key of its call. A group's
    keys share their role, ``withDecryption`` and ``region`` (of each key's name: one call is
    made with one of each, to one region).
    """
    groups: list[list[Key]] = []
    names: list[set[str]] = []
    for key in keys:
        name = identity(key)
        for group, taken in zip(groups, names, strict=True):
            if len(group) < size and name not in taken and group[0].role == key.role \
                    and group[0].with_decryption == key.with_decryption \
                    and region(group[0].name) == region(key.name):
                group.append(key)
                taken.add(name)
                break
        else:
            groups.append([key])
            names.append({name})
    return groups
