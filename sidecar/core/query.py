"""The query syntax (SPEC section 2): split and percent-decode a query string, collect and
validate its keys, the ``Read`` a request becomes. The per-route parsers are in ``reads``.

Every refusal is a 400 naming the bad key, before any AWS call. Used by the HTTP server for every
read and by the prefetch list, so both speak one syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from sidecar.core.errors import bad_request
from sidecar.core.key import Key
from sidecar.core.transform import GROUP_TRANSFORMS, TRANSFORMS, json_key_problem

MAX_NAME_CHARS = 2048
MAX_SELECTOR_CHARS = 256
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TRUE_FALSE = {"true": True, "1": True, "false": False, "0": False}
# AWS's documented rules, checked here so that a client mistake is a 400 naming the key before
# any AWS call (botocore's own validation would otherwise surface as a 500).
_LABEL = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
_LABEL_RESERVED = re.compile(r"(?i)^(aws|ssm|[0-9])")
# GetParameter reads a Secrets Manager secret by this prefix; a label there is a version stage.
SECRET_REFERENCE = "/aws/reference/secretsmanager/"
MAX_STAGE_CHARS = 256

EXTRA_KEYS = frozenset({"maxAge", "transform", "jsonKey", "roleArn"})  # on every read path
# The Secrets Manager Agent's rule for ``roleArn`` (ASCII word characters only).
ROLE_ARN = re.compile(r"arn:[A-Za-z0-9_-]+:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+")
MAX_BATCH = 100
MAX_AGE_SECS = 86400
SINGLE, SSM_BATCH_READ, SECRET_BATCH_READ, PATH_READ = "single", "ssm-batch", "secret-batch", "path"
S3_READ = "s3"


@dataclass(frozen=True, slots=True)
class Read:
    """What a request asks: one key (``single``) or a group, and how to answer it."""

    key: Key
    refresh_now: bool = False
    kind: str = SINGLE
    keys: tuple[Key, ...] = ()  # the members of a batch read, in request order
    max_age: int | None = None
    transform: str | None = None
    json_key: str | None = None

    @property
    def plain(self) -> bool:
        """A single read served as AWS's JSON straight from the cache (the hit path)."""
        return self.kind == SINGLE and self.max_age is None and self.transform is None \
            and self.json_key is None


def split_query(raw: str) -> list[tuple[str, str]]:
    """Split and percent-decode ``raw`` into ordered pairs, refusing malformed encoding.

    ``+`` stays a plus sign: no parameter or secret name can hold a space, while secret names may
    hold ``+``, so reading it literally is the only useful choice.
    """
    pairs: list[tuple[str, str]] = []
    for part in raw.split("&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition("=")
        name = percent_decoded(raw_name, "the name of query parameter " + _shown(raw_name))
        pairs.append((name, percent_decoded(raw_value, "query parameter " + _shown(name))))
    return pairs


def percent_decoded(raw: str, where: str) -> str:
    """``raw`` percent-decoded, or a 400 saying ``where`` the bad encoding is."""
    if _BAD_PERCENT.search(raw):
        raise bad_request("InvalidParameterValue", f"malformed percent-encoding in {where}")
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise bad_request("InvalidParameterValue",
                          f"{where} is not valid UTF-8 once percent-decoded") from None


def _shown(text: str) -> str:
    """A query key as it may appear in an error message: short and printable."""
    return repr(text[:64])


def collect(pairs: list[tuple[str, str]], allowed: frozenset[str]) -> dict[str, str]:
    """Pairs into a dict (insertion order kept), refusing unknown, repeated and empty keys."""
    found: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise bad_request("UnknownParameter", f"unknown query parameter {_shown(name)}")
        if name in found:
            raise bad_request("InvalidParameterValue", f"query parameter {name!r} is repeated")
        if value == "":
            raise bad_request(
                "MissingParameter" if name in ("name", "secretId") else "InvalidParameterValue",
                f"query parameter {name!r} is empty",
            )
        if _CONTROL.search(value):
            raise bad_request(
                "InvalidParameterValue", f"query parameter {name!r} holds control characters"
            )
        limit = MAX_NAME_CHARS if name in ("name", "secretId") else MAX_SELECTOR_CHARS
        if len(value) > limit:
            raise bad_request(
                "InvalidParameterValue",
                f"query parameter {name!r} is longer than {limit} characters",
            )
        found[name] = value
    return found


def flag(found: dict[str, str], name: str) -> bool:
    """A boolean query key: absent is False; ``withDecryption`` takes only true or false."""
    raw = found.get(name)
    if raw is None:
        return False
    value = _TRUE_FALSE.get(raw.lower())
    if value is None or (name == "withDecryption" and raw.lower() not in ("true", "false")):
        allowed = "true or false" if name == "withDecryption" else "true, false, 1 or 0"
        raise bad_request("InvalidParameterValue", f"query parameter {name!r} must be {allowed}")
    return value


def extras(found: dict[str, str], group: bool = False) -> dict[str, object]:
    """``maxAge``, ``transform`` and ``jsonKey``, validated."""
    chosen: dict[str, object] = {}
    raw = found.get("maxAge")
    if raw is not None:
        if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_AGE_SECS:
            raise bad_request("InvalidParameterValue", "query parameter 'maxAge' must be a whole "
                              f"number of seconds from 0 to {MAX_AGE_SECS}")
        chosen["max_age"] = int(raw)
    transform = found.get("transform")
    if transform is not None:
        allowed = GROUP_TRANSFORMS if group else TRANSFORMS
        if transform not in allowed:
            raise bad_request("InvalidParameterValue", "query parameter 'transform' must be one "
                              "of " + ", ".join(allowed) + (" on a group read" if group else ""))
        chosen["transform"] = transform
    json_key = found.get("jsonKey")
    if json_key is not None:
        problem = json_key_problem(json_key)
        if problem is not None:
            raise bad_request("InvalidParameterValue", f"query parameter 'jsonKey' {problem}")
        chosen["json_key"] = json_key
    return chosen


def role_of(found: dict[str, str]) -> str | None:
    """``roleArn``, checked against the role ARN form before any AWS call."""
    role = found.get("roleArn")
    if role is not None and not ROLE_ARN.fullmatch(role):
        raise bad_request("InvalidParameterValue", "query parameter 'roleArn' must be a role "
                          "ARN: arn:<partition>:iam::<12-digit account>:role/<name>")
    return role


def required(found: dict[str, str], name: str) -> str:
    value = found.get(name)
    if value is None:
        raise bad_request("MissingParameter", f"query parameter {name!r} is required")
    return value


def check_label(name: str, label: str, where: str = "query parameter 'label'") -> None:
    """A ``label`` selector on the parameter ``name``, before any AWS call.

    On an ``/aws/reference/secretsmanager/`` name it is a Secrets Manager version stage (what the
    AWS extension sends as ``Name:stage``): AWSCURRENT, AWSPREVIOUS, AWSPENDING or a custom
    stage. The Secrets Manager API reference gives a stage only a length, 1 to 256 characters,
    and no character set; ``:`` is refused because it would split the name. Elsewhere it is an
    SSM label (LabelParameterVersion's rule: 1-100 letters, digits, ``.``, ``-``, ``_``, not
    starting with a digit, ``aws`` or ``ssm``).
    """
    if name.startswith(SECRET_REFERENCE):
        if len(label) > MAX_STAGE_CHARS or ":" in label:
            raise bad_request(
                "InvalidParameterValue",
                f"{where} is a Secrets Manager version stage on a reference name (AWSCURRENT, "
                f"AWSPREVIOUS, AWSPENDING or your own): 1-{MAX_STAGE_CHARS} characters "
                "without ':'",
            )
        return
    if not _LABEL.fullmatch(label) or _LABEL_RESERVED.match(label):
        raise bad_request(
            "InvalidParameterValue",
            f"{where} must be 1-100 letters, digits, '.', '-' or '_', "
            "not starting with a digit, 'aws' or 'ssm'",
        )


def collect_group(pairs: list[tuple[str, str]], allowed: frozenset[str],
                  listed: str) -> tuple[list[str], dict[str, str]]:
    """The repeated ``listed`` key's values in order, and the other keys as ``collect``."""
    values: list[str] = []
    rest: list[tuple[str, str]] = []
    for name, value in pairs:
        if name == listed:
            values.append(collect([(name, value)], frozenset({listed}))[listed])
        else:
            rest.append((name, value))
    found = collect(rest, allowed - {listed})
    if not values:
        raise bad_request("MissingParameter", f"query parameter {listed!r} is required")
    if len(values) > MAX_BATCH:
        raise bad_request("InvalidParameterValue",
                          f"at most {MAX_BATCH} {listed!r} values are accepted in one read")
    return values, found
