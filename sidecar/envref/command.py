"""``parameters-secrets-sidecar exec [OPTIONS] -- COMMAND [ARGS...]`` (README, "Containers,
EC2, local: exec"): COMMAND started with the references in its environment (and in
``--template`` files) resolved, through a daemon or, with ``--standalone``, on its own.

Without ``--watch`` this process becomes COMMAND (``execve``): same pid, COMMAND's own signals
and exit status. With ``--watch`` it stays as COMMAND's parent (``supervise``).
"""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sidecar.core.hardening import PR_SET_DUMPABLE
from sidecar.envref import options as envopts
from sidecar.envref import templates
from sidecar.envref.client import Client, Endpoint, find_token
from sidecar.envref.resolve import Resolved, resolve_texts
from sidecar.envref.supervise import RESTART, SIGNAL, Supervisor
from sidecar.envref.wrapper import apply, command_of, execute, program_environment, say

TTL_VARIABLES = ("SSM_PARAMETER_STORE_TTL", "SECRETS_MANAGER_TTL")
SHARED_TTL = "PARAMETERS_SECRETS_EXTENSION_TTL_SECS"
DEFAULT_INTERVAL_SECS = 300
MAX_INTERVAL_SECS = 86400  # also the daemon's bound on maxAge


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(
        prog="parameters-secrets-sidecar exec",
        description="Run COMMAND with the {{resolve:...}} references in its environment (and "
                    "in --template files) replaced by their values.")
    made.add_argument("--endpoint", metavar="URL",
                      help="the daemon: http://HOST:PORT or unix:///path (default: "
                           f"{envopts.ENDPOINT}, else http://127.0.0.1:$PORT)")
    made.add_argument("--standalone", action="store_true",
                      help="no daemon: read AWS from this process, with the daemon's own code")
    made.add_argument("--on-error", choices=envopts.ON_ERROR_CHOICES,
                      help=f"a reference that cannot be resolved: fail (default; or "
                           f"{envopts.ON_ERROR}) or leave the variable unset")
    made.add_argument("--watch", action="store_true",
                      help="stay as COMMAND's parent; re-read the references every --interval")
    made.add_argument("--interval", type=int, metavar="SECS",
                      help="seconds between re-reads, 1-86400 (default: the cache's TTL)")
    made.add_argument("--on-change", choices=(SIGNAL, RESTART), default=SIGNAL,
                      help="on a changed value: send --signal (default) or restart COMMAND")
    made.add_argument("--signal", default="HUP", help="the signal for a change (default HUP)")
    made.add_argument("--kill-signal", default="TERM",
                      help="the signal that stops COMMAND for a restart (default TERM)")
    made.add_argument("--kill-timeout", type=float, default=5.0, metavar="SECS",
                      help="how long a restart waits before SIGKILL (default 5)")
    made.add_argument("--template", action="append", default=[], metavar="SRC:DEST",
                      help="render SRC into DEST, on tmpfs or ramfs only (repeatable)")
    made.add_argument("--template-mode", default="0600", metavar="MODE",
                      help="DEST's mode, octal (default 0600)")
    made.add_argument("--template-owner", metavar="USER[:GROUP]", help="DEST's owner")
    made.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    return made


def signal_number(text: str, option: str) -> int:
    name = text.strip().upper()
    try:
        if name.isdigit():
            return int(signal.Signals(int(name)))
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except (KeyError, ValueError):
        raise ValueError(f"{option} {text[:32]!r} is invalid: expected a signal name such as "
                         "HUP, TERM, USR1, or its number") from None


def default_interval(env: Mapping[str, str]) -> int:
    """The cache's TTL as the daemon reads it: the smaller of the two; 300 s when unset,
    invalid or 0 (caching off)."""
    found = []
    for variable in TTL_VARIABLES:
        raw = (env.get(variable) or env.get(SHARED_TTL) or str(DEFAULT_INTERVAL_SECS)).strip()
        if raw.isascii() and raw.isdigit() and int(raw) > 0:
            found.append(min(int(raw), MAX_INTERVAL_SECS))
    return min(found, default=DEFAULT_INTERVAL_SECS)


@dataclass
class Plan:
    command: list[str]
    chosen: envopts.Options
    standalone: bool
    watch: bool
    interval: int
    on_change: str
    reload_signal: int
    kill_signal: int
    kill_timeout: float
    templates: list[templates.Template]
    mode: int
    owner: tuple[int, int] | None


def plan(argv: list[str], env: Mapping[str, str]) -> Plan:
    """The validated options; ``ValueError`` is the one line to show."""
    args = parser().parse_args(argv)
    command = command_of(args.command)
    if command is None:
        raise ValueError("exec needs a COMMAND: parameters-secrets-sidecar exec [OPTIONS] -- "
                         "COMMAND [ARGS...]")
    chosen = envopts.load(env)
    if args.standalone and args.endpoint is not None:
        raise ValueError("--standalone reads AWS itself: it takes no --endpoint")
    if args.endpoint is not None:
        chosen = envopts.Options(chosen.on_error, chosen.timeout_ms,
                                 envopts.endpoint(args.endpoint, "--endpoint"))
    if args.on_error is not None:
        chosen = envopts.Options(args.on_error, chosen.timeout_ms, chosen.endpoint)
    interval = default_interval(env) if args.interval is None else args.interval
    if not 1 <= interval <= MAX_INTERVAL_SECS:
        raise ValueError(f"--interval {interval} is invalid: expected 1 to {MAX_INTERVAL_SECS}")
    if not 0 <= args.kill_timeout <= 3600:
        raise ValueError(f"--kill-timeout {args.kill_timeout} is invalid: expected 0 to 3600")
    chosen_templates = [templates.parse(spec) for spec in args.template]
    for template in chosen_templates:
        templates.check_destination(template)
    return Plan(command, chosen, args.standalone, args.watch, interval, args.on_change,
                signal_number(args.signal, "--signal"),
                signal_number(args.kill_signal, "--kill-signal"), args.kill_timeout,
                chosen_templates, templates.parse_mode(args.template_mode),
                templates.parse_owner(args.template_owner) if args.template_owner else None)


def not_dumpable() -> None:
    """No ptrace and no /proc/<pid>/mem or environ for other processes of the user while
    values are in this process's memory. COMMAND is dumpable again: ``execve`` resets it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    """``argv`` is what follows ``exec``."""
    env = program_environment()
    try:
        chosen = plan(argv, env)
        sources = {template.label: templates.read_source(template)
                   for template in chosen.templates}
    except ValueError as exc:
        say("ERROR", str(exc))
        return 2
    not_dumpable()
    if not chosen.standalone:
        return Run(chosen, env, sources, _connector(
            chosen.chosen.endpoint, lambda: find_token(env), chosen.chosen.timeout_ms)).start()
    from sidecar.envref.inprocess import InProcessDaemon, StartFailed

    daemon = InProcessDaemon(env)
    try:
        endpoint = daemon.start()
        return Run(chosen, env, sources, _connector(
            endpoint, lambda: daemon.token, chosen.chosen.timeout_ms)).start()
    except StartFailed as exc:
        say("ERROR", str(exc))
        return 1
    finally:
        daemon.stop()


Connect = Callable[[], Callable[[], Client]]


def _connector(endpoint: Endpoint, token: Callable[[], str], bound_ms: int) -> Connect:
    """A fresh ``connect`` (its bound counted from when it is made) for each round of reads."""
    def fresh() -> Callable[[], Client]:
        deadline = time.monotonic() + bound_ms / 1000

        def connect() -> Client:
            client = Client(endpoint, token(), deadline, bound_ms)
            client.wait_ready()
            return client

        return connect

    return fresh


class Run:
    """One ``exec``: resolve, render, then become COMMAND or supervise it."""

    def __init__(self, chosen: Plan, env: Mapping[str, str], sources: Mapping[str, str],
                 connect: Connect) -> None:
        self.chosen = chosen
        self.env = env
        self.sources = sources
        self.connect = connect
        self.by_label = {template.label: template for template in chosen.templates}
        self.environ: dict[str, str] = {}
        self.rendered: dict[str, str] = {}

    def _resolve(self, max_age: int | None) -> tuple[Resolved, Resolved]:
        """The environment's part and the templates' part of one round of reads."""
        both = resolve_texts({**self.env, **self.sources}, self.connect(), max_age)

        def part(files: bool) -> Resolved:
            return Resolved(
                {k: v for k, v in both.texts.items() if (k in self.sources) == files},
                [f for f in both.failures if (f.label in self.sources) == files])

        return part(False), part(True)

    def _render(self, texts: Mapping[str, str]) -> None:
        for label, text in texts.items():
            if text != self.rendered.get(label):
                templates.write(self.by_label[label], text, self.chosen.mode, self.chosen.owner)
                self.rendered[label] = text

    def start(self) -> int:
        variables, files = self._resolve(None)
        environ = apply(self.env, variables, self.chosen.chosen.on_error)
        for failure in files.failures:  # a file is never rendered half-resolved
            say("ERROR", failure.line())
        if environ is None or files.failures:
            return 1
        try:
            self._render({label: files.texts.get(label, text)
                          for label, text in self.sources.items()})
        except (OSError, ValueError) as exc:
            say("ERROR", f"cannot write a template: {exc}")
            return 1
        if not self.chosen.watch:
            return execute(self.chosen.command, environ)
        self.environ = environ
        chosen = self.chosen
        return Supervisor(chosen.command, environ, chosen.interval, self.reread,
                          chosen.on_change, chosen.reload_signal, chosen.kill_signal,
                          chosen.kill_timeout, say).run()

    def reread(self) -> dict[str, str] | None:
        """The new environment when a value changed (templates rendered again first), else
        None. A reference that fails now keeps every current value, except for a variable
        that has none (left unset at the start): it stays unset, quietly."""
        variables, files = self._resolve(self.chosen.interval)
        blocking = [f for f in variables.failures if f.label in self.environ] + files.failures
        for failure in blocking:
            say("WARN", f"{failure.line()}; the current values stay")
        if blocking:
            return None
        environ = dict(self.env)
        environ.update(variables.texts)
        for failure in variables.failures:
            environ.pop(failure.label, None)
        texts = {label: files.texts.get(label, text) for label, text in self.sources.items()}
        if environ == self.environ and texts == self.rendered:
            return None
        try:
            self._render(texts)
        except (OSError, ValueError) as exc:
            say("WARN", f"cannot write a template: {exc}; the current values stay")
            return None
        self.environ = environ
        return environ
