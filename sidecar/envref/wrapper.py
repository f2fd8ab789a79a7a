"""``env-resolve -- COMMAND [ARGS...]``: resolve the references in this process's environment
through the daemon, then become COMMAND (``execve``) with the resolved environment.

This is the Lambda exec wrapper's work (the layers' ``exec-wrapper`` scripts call it), so it
is standard library only and imports nothing it does not need: it runs inside the function's
INIT. Values reach COMMAND only through its environment; they are never printed, never put in
an argument, and this process is replaced by COMMAND, so nothing of it remains.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from sidecar import NAME
from sidecar.envref import options as envopts
from sidecar.envref.client import Client, find_token
from sidecar.envref.resolve import Resolved, resolve_texts

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

USAGE = "usage: parameters-secrets-sidecar env-resolve -- COMMAND [ARGS...]"
# Set by PyInstaller's bootloader for the frozen program itself; never for COMMAND.
_FROZEN_ONLY = ("_PYI_", "_MEIPASS")


def say(level: str, message: str) -> None:
    """One diagnostic line on stderr (stdout belongs to COMMAND). Never holds a value."""
    print(f"[{NAME}] {level} {message}", file=sys.stderr, flush=True)


def given_environment() -> dict[str, str]:
    """The environment this process was started with, as ``/proc/self/environ`` keeps it:
    without what the interpreter changed in ``os.environ`` since (CPython's locale coercion
    adds ``LC_CTYPE``, PEP 538). ``os.environ`` where /proc is not mounted."""
    try:
        with open("/proc/self/environ", "rb") as handle:
            block = handle.read()
    except OSError:
        return dict(os.environ)
    result: dict[str, str] = {}
    for entry in block.split(b"\0"):
        name, equals, value = entry.partition(b"=")
        if equals and name:
            result[os.fsdecode(name)] = os.fsdecode(value)
    return result


def program_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment COMMAND should get (default: ``given_environment()``): in the frozen
    binary, without what PyInstaller's bootloader added for this process (its ``_PYI_*``
    variables, and ``LD_LIBRARY_PATH``, which it saves in ``LD_LIBRARY_PATH_ORIG``:
    PyInstaller's manual, "Run-time information")."""
    result = given_environment() if env is None else dict(env)
    if not getattr(sys, "frozen", False):
        return result
    for name in list(result):
        if name.startswith(_FROZEN_ONLY):
            del result[name]
    original = result.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is not None:
        result["LD_LIBRARY_PATH"] = original
    elif result.get("LD_LIBRARY_PATH") == getattr(sys, "_MEIPASS", None):
        del result["LD_LIBRARY_PATH"]
    return result


def connector(env: Mapping[str, str], chosen: envopts.Options) -> Callable[[], Client]:
    """A function giving a client of the daemon once it answers ``/ping``, within the bound
    counted from now."""
    deadline = time.monotonic() + chosen.timeout_ms / 1000

    def connect() -> Client:
        client = Client(chosen.endpoint, find_token(env), deadline, chosen.timeout_ms)
        client.wait_ready()
        return client

    return connect


def apply(env: Mapping[str, str], resolved: Resolved, on_error: str) -> dict[str, str] | None:
    """The environment for COMMAND, or None when it must not start. Says each failure."""
    if resolved.failures and on_error == envopts.FAIL:
        for failure in resolved.failures:
            say("ERROR", failure.line())
        return None
    environ = dict(env)
    environ.update(resolved.texts)
    for failure in resolved.failures:
        say("WARN", f"{failure.line()}; {failure.label} is unset "
                    f"({envopts.ON_ERROR}=unset)")
        environ.pop(failure.label, None)
    return environ


def execute(command: list[str], environ: dict[str, str]) -> int:
    """Become ``command`` (found on ``environ``'s PATH); returns only if that fails, with a
    shell's status: 127 not found, 126 not runnable."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, environ)
    except FileNotFoundError:
        say("ERROR", f"{command[0][:256]!r}: command not found")
        return 127
    except OSError as exc:
        say("ERROR", f"{command[0][:256]!r} cannot be run: {exc.strerror}")
        return 126


def command_of(argv: list[str]) -> list[str] | None:
    """COMMAND and its arguments, after an optional ``--``."""
    command = argv[1:] if argv[:1] == ["--"] else argv
    return command or None


def main(argv: list[str]) -> int:
    """``argv`` is what follows ``env-resolve``."""
    command = command_of(argv)
    if command is None:
        say("ERROR", USAGE)
        return 2
    env = program_environment()
    try:
        chosen = envopts.load(env)
    except ValueError as exc:
        say("ERROR", str(exc))
        return 2
    environ = apply(env, resolve_texts(env, connector(env, chosen)), chosen.on_error)
    if environ is None:
        return 1
    return execute(command, environ)
