"""``--template SRC:DEST``: references inside a file, rendered into a file on a memory-backed
file system only (SPEC section 8: values are never written to disk).

DEST's directory must be on ``tmpfs`` or ``ramfs``, as ``/proc/mounts`` says for the deepest
mount point above it (symbolic links resolved). DEST is written atomically: a temporary file in
its directory, created with mode 0600, then renamed over DEST (``rename(2)`` replaces it in one
step, so a reader sees the old file or the new one, never part of one).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass

MEMORY_FILE_SYSTEMS = ("tmpfs", "ramfs")
DEFAULT_MODE = 0o600
_MOUNTS = "/proc/mounts"


@dataclass(frozen=True)
class Template:
    source: str
    destination: str

    @property
    def label(self) -> str:
        """How failures name it."""
        return f"template {self.source}"


def parse(spec: str) -> Template:
    """``SRC:DEST`` (split at the first colon); ``ValueError`` says what is expected."""
    source, colon, destination = spec.partition(":")
    if not colon or not source or not destination or destination.endswith("/"):
        raise ValueError(f"--template {spec[:200]!r} is invalid: expected SRC:DEST, two file "
                         "paths (DEST on tmpfs or ramfs, such as /dev/shm/app.conf)")
    return Template(source, destination)


def _unescape(field: str) -> str:
    """A /proc/mounts field: space, tab, newline and backslash are octal escapes there."""
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, plain)
    return field


def file_system(directory: str, mounts: str = _MOUNTS) -> str:
    """The type of the file system ``directory`` is on (the last mount of the deepest mount
    point above its real path, as the kernel lists them)."""
    real = os.path.realpath(directory)
    best, kind = "", "unknown"
    with open(mounts, encoding="utf-8", errors="replace") as listing:
        for line in listing:
            fields = line.split()
            if len(fields) < 3:
                continue
            point = _unescape(fields[1])
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, kind = point, fields[2]
    return kind


def check_destination(template: Template) -> None:
    """``ValueError`` (one line) unless DEST's directory exists on tmpfs or ramfs."""
    directory = os.path.dirname(os.path.abspath(template.destination))
    if not os.path.isdir(directory):
        raise ValueError(f"--template {template.source}:{template.destination}: the directory "
                         f"{directory!r} does not exist")
    kind = file_system(directory)
    if kind not in MEMORY_FILE_SYSTEMS:
        raise ValueError(f"--template {template.source}:{template.destination}: {directory!r} "
                         f"is on {kind}, not in memory; values are written only to tmpfs or "
                         "ramfs (such as /dev/shm, or a Kubernetes emptyDir with medium: Memory)")


def read_source(template: Template) -> str:
    """SRC's text (bytes that are not UTF-8 are kept as they are); ``ValueError`` if unreadable."""
    try:
        with open(template.source, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except OSError as exc:
        raise ValueError(f"--template {template.source}:{template.destination}: cannot read "
                         f"{template.source!r}: {exc.strerror}") from None


def write(template: Template, text: str, mode: int = DEFAULT_MODE,
          owner: tuple[int, int] | None = None) -> None:
    """``text`` into DEST atomically, with ``mode`` and ``owner`` (uid, gid; -1 keeps one)."""
    directory = os.path.dirname(os.path.abspath(template.destination))
    check_destination(template)  # again: a mount may have changed since the start
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(template.destination)}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(text.encode("utf-8", "surrogateescape"))
            os.fchmod(out.fileno(), mode)
            if owner is not None:
                os.fchown(out.fileno(), *owner)
        os.replace(temporary, template.destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def parse_mode(text: str) -> int:
    """Octal ``0600``, ``600`` or ``0o600``, from 0 to 0o777; ``ValueError`` otherwise."""
    digits = text.strip().lower().removeprefix("0o")
    if not 1 <= len(digits) <= 4 or any(c not in "01234567" for c in digits) \
            or int(digits, 8) > 0o777:
        raise ValueError(f"--template-mode {text[:32]!r} is invalid: expected an octal file "
                         "mode from 0000 to 0777, such as 0600")
    return int(digits, 8)


def parse_owner(text: str) -> tuple[int, int]:
    """``USER[:GROUP]`` as names or numbers (uid, gid; -1 keeps the group)."""
    import grp
    import pwd

    user, _, group = text.partition(":")
    try:
        uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        gid = -1 if not group else int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"--template-owner {text[:64]!r} is invalid: no such user or group "
                         "here (names are looked up on this host; numbers are taken as they "
                         "are)") from None
    return uid, gid
