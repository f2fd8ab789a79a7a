"""When to end this extension's INIT: the first ``event/next`` (README, Cold start).

Lambda runs INIT with more CPU than a small function's handler gets: one vCPU at 1,769 MB and
proportionally less below (about 0.07 at 128 MB), while INIT has been measured to run
unthrottled up to 3 GB. So the daemon's start-up (a few hundred ms of CPU) costs the user least
inside INIT wherever the function has less than one vCPU, and the first ``event/next`` waits
for it (bounded). At one vCPU and above the start-up runs as fast after INIT as inside it, and
ending INIT at once overlaps it with the runtime's own INIT and leaves a function that reads
nothing on its first invoke unpenalised (scripts/bench-coldstart measures both).

Where INIT is off the request path (provisioned concurrency, SnapStart, Lambda Managed
Instances) waiting costs users nothing, so INIT always waits there.

Standard library only: this runs before the register call's first ``event/next``.
"""

from __future__ import annotations

from collections.abc import Mapping

from sidecar.config.settings import Settings
from sidecar.core.record import Record

MEMORY_VARIABLE = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
# Lambda's CPU share reaches one vCPU at this memory size: below it the handler gets less CPU
# than INIT, so the start-up belongs inside INIT (measured: README, Cold start).
ONE_VCPU_MB = 1769
OFF_REQUEST_PATH = ("provisioned-concurrency", "snap-start", "lambda-managed-instances")


class InitPlan(Record):
    wait: bool  # hold the first event/next until the daemon serves
    prefetch: bool  # ... and until the prefetch has landed
    bound_secs: float  # never hold it longer than this after register
    reason: str  # for the start-up log line


def memory_mb(env: Mapping[str, str]) -> int | None:
    """The function's memory size, or None where Lambda did not say (not a real Lambda)."""
    raw = env.get(MEMORY_VARIABLE, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def plan(settings: Settings, env: Mapping[str, str]) -> InitPlan:
    """Whether the first ``event/next`` waits for the start-up, from the settings and the
    function's memory size and initialization type."""
    prefetch = settings.prefetch_wait and bool(settings.prefetch or settings.prefetch_tags
                                               or settings.appconfig.prefetch)
    bound = settings.prefetch_wait_ms / 1000
    memory = memory_mb(env)
    if settings.init_mode == "early":
        return InitPlan(False, False, 0.0, "PARAMETERS_SECRETS_EXTENSION_INIT_MODE=early")
    if settings.init_mode == "wait":
        return InitPlan(bound > 0, prefetch, bound, "PARAMETERS_SECRETS_EXTENSION_INIT_MODE=wait")
    if settings.initialization_type in OFF_REQUEST_PATH:
        return InitPlan(bound > 0, prefetch, bound,
                        f"{settings.initialization_type}: INIT is off the request path")
    if memory is None:
        # Lambda always sets it; without it this is an emulator, whose CPU is not Lambda's.
        return InitPlan(False, False, 0.0, f"{MEMORY_VARIABLE} unset")
    if memory < ONE_VCPU_MB:
        return InitPlan(bound > 0, prefetch, bound,
                        f"{memory} MB: less than one vCPU after INIT")
    return InitPlan(False, False, 0.0, f"{memory} MB: one vCPU or more after INIT")
