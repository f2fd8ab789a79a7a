"""What the cache does, as counters: Prometheus text exposition for ``/metrics`` and CloudWatch
Embedded Metric Format lines for Lambda.

Labels are fixed vocabularies (service, result, operation, outcome, route, status, cause):
never a parameter or secret name, an ARN or a value, which would leak the inventory and make
the series count unbounded. Counting is a dictionary increment on the hit path.
"""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterable

from sidecar import __version__

PREFIX = "parameters_secrets_sidecar"
# Upstream call latency buckets, seconds (AWS answers in 5-300 ms; retries and timeouts more).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Every counter of the process. Keys are tuples of label values, in the order of the
    metric's label names below."""

    def __init__(self) -> None:
        self.gets: Counter[tuple[str, str]] = Counter()  # service, result
        self.deduplicated: Counter[tuple[str]] = Counter()  # service
        self.refreshes: Counter[tuple[str, str]] = Counter()  # service, outcome
        self.stale: Counter[tuple[str, str]] = Counter()  # service, reason
        self.evictions: Counter[tuple[str]] = Counter()  # cause
        self.calls: Counter[tuple[str, str, str]] = Counter()  # service, operation, outcome
        self.latency: dict[tuple[str, str], list[float]] = {}  # service, operation: buckets+sum
        self.requests: Counter[tuple[str, int]] = Counter()  # route, status
        self.prefetch: Counter[tuple[str]] = Counter()  # result
        # Connections refused at the cap, and those the daemon closed itself, by reason
        # (evicted_stalled, evicted_idle, write_timeout, head_timeout, unsent_bound).
        self.refused = 0
        self.connections: Counter[tuple[str]] = Counter()  # reason
        self.gauges: Callable[[], dict[str, float]] = dict

    def observe_call(self, service: str, operation: str, outcome: str, seconds: float) -> None:
        self.calls[(service, operation, outcome)] += 1
        row = self.latency.get((service, operation))
        if row is None:
            row = self.latency[(service, operation)] = [0.0] * (len(BUCKETS) + 2)
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                row[index] += 1
        row[-2] += 1  # +Inf (the count)
        row[-1] += seconds  # the sum

    # -- Prometheus ---------------------------------------------------------------------------
    def exposition(self) -> bytes:
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {PREFIX}_{name} {help_text}")
            lines.append(f"# TYPE {PREFIX}_{name} {kind}")

        def samples(name: str, labels: tuple[str, ...], counts: Iterable[tuple[tuple[str, ...],
                                                                                float]]) -> None:
            for values, count in sorted(counts):
                pairs = ",".join(f'{label}="{_escape(value)}"'
                                 for label, value in zip(labels, values, strict=True))
                lines.append(f"{PREFIX}_{name}{{{pairs}}} {_number(count)}")

        family("build_info", "gauge", "Version of the daemon and of Python.")
        lines.append(f'{PREFIX}_build_info{{version="{_escape(__version__)}",'
                     f'python="{platform.python_version()}"}} 1')
        family("cache_gets_total", "counter", "Reads by service and result (hit, miss, stale, "
               "bypass).")
        samples("cache_gets_total", ("service", "result"), self.gets.items())
        family("cache_deduplicated_loads_total", "counter", "Reads that joined a fetch already "
               "in flight for their key instead of making their own AWS call.")
        samples("cache_deduplicated_loads_total", ("service",), self.deduplicated.items())
        family("cache_refreshes_total", "counter", "Background refreshes (refresh-ahead and "
               "retries after failures) by outcome.")
        samples("cache_refreshes_total", ("service", "outcome"), self.refreshes.items())
        family("cache_stale_answers_total", "counter", "Answers served stale, by reason.")
        samples("cache_stale_answers_total", ("service", "reason"), self.stale.items())
        family("cache_evictions_total", "counter", "Entries evicted, by cause (items, bytes).")
        samples("cache_evictions_total", ("cause",), self.evictions.items())
        for name, value in sorted(self.gauges().items()):
            family(name, "gauge", _GAUGE_HELP.get(name, name))
            lines.append(f"{PREFIX}_{name} {_number(value)}")
        family("upstream_calls_total", "counter", "AWS calls by service, operation and outcome "
               "(success, client_error, throttled, server_error, timeout, unavailable).")
        samples("upstream_calls_total", ("service", "operation", "outcome"), self.calls.items())
        family("upstream_call_duration_seconds", "histogram", "Duration of AWS calls, retries "
               "included.")
        for (service, operation), row in sorted(self.latency.items()):
            base = f'service="{service}",operation="{operation}"'
            for bound, count in zip(BUCKETS, row, strict=False):
                lines.append(f'{PREFIX}_upstream_call_duration_seconds_bucket{{{base},'
                             f'le="{bound}"}} {_number(count)}')
            lines.append(f'{PREFIX}_upstream_call_duration_seconds_bucket{{{base},le="+Inf"}} '
                         f"{_number(row[-2])}")
            lines.append(f"{PREFIX}_upstream_call_duration_seconds_sum{{{base}}} {row[-1]!r}")
            lines.append(f"{PREFIX}_upstream_call_duration_seconds_count{{{base}}} "
                         f"{_number(row[-2])}")
        family("http_requests_total", "counter", "HTTP requests by route and status.")
        samples("http_requests_total", ("route", "status"),
                (((route, str(status)), count) for (route, status), count
                 in self.requests.items()))
        family("prefetch_items_total", "counter", "Prefetch items by result (cached, failed).")
        samples("prefetch_items_total", ("result",), self.prefetch.items())
        family("http_connections_refused_total", "counter", "Connections answered 429 and "
               "closed because every connection was busy at the cap.")
        lines.append(f"{PREFIX}_http_connections_refused_total {self.refused}")
        family("http_connections_closed_total", "counter", "Connections the daemon closed "
               "itself, by reason (evicted_stalled, evicted_idle, write_timeout, head_timeout, "
               "unsent_bound).")
        samples("http_connections_closed_total", ("reason",), self.connections.items())
        return ("\n".join(lines) + "\n").encode()

    # -- CloudWatch EMF -----------------------------------------------------------------------
    def emf_totals(self) -> dict[str, float]:
        """The cumulative figures an EMF line reports deltas of."""
        gets: Counter[str] = Counter()
        for (_, result), count in self.gets.items():
            gets[result] += count
        calls = sum(self.calls.values())
        throttled = sum(c for (_, _, outcome), c in self.calls.items() if outcome == "throttled")
        return {"CacheHits": gets["hit"], "CacheMisses": gets["miss"],
                "StaleAnswers": gets["stale"], "Bypasses": gets["bypass"],
                "DeduplicatedLoads": sum(self.deduplicated.values()), "AwsCalls": calls,
                "AwsThrottled": throttled, "Evictions": sum(self.evictions.values())}


_GAUGE_HELP = {
    "cache_entries": "Entries held in the cache.",
    "cache_bytes": "Bytes of response bodies held in the cache.",
    "cache_max_entries": "The cache's bound on entries.",
    "cache_max_bytes": "The cache's bound on bytes.",
    "http_connections_open": "Open client connections.",
    "http_unsent_bytes": "Answer bytes written but not yet taken by clients.",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class EmfWriter:
    """One EMF line with the deltas since the previous line (CloudWatch extracts metrics from
    the function's log stream). Printed bare: no log prefix may precede the JSON."""

    def __init__(self, metrics: Metrics, namespace: str, function_name: str,
                 write: Callable[[str], None]) -> None:
        self._metrics = metrics
        self._namespace = namespace
        self._function = function_name
        self._write = write
        self._last: dict[str, float] = {}

    def flush(self, always: bool = False) -> bool:
        totals = self._metrics.emf_totals()
        deltas = {name: value - self._last.get(name, 0) for name, value in totals.items()}
        if not always and not any(deltas.values()):
            return False
        self._last = totals
        document: dict[str, object] = {
            "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
                "Namespace": self._namespace, "Dimensions": [["FunctionName"]],
                "Metrics": [{"Name": name, "Unit": "Count"} for name in deltas]}]},
            "FunctionName": self._function, **deltas}
        self._write(json.dumps(document, separators=(",", ":")))
        return True
