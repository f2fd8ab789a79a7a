"""Fleet simulation: K daemons share one upstream that enforces an account quota.

Each daemon stands for one execution environment (a Lambda instance, a task). All start together
(a cold-start storm) and are read by clients over many keys. The shared upstream is a small fake
SSM that allows QUOTA calls per second in all (a token bucket, as AWS throttles an account) and
answers ThrottlingException beyond. Three configurations run the same load:

- caching off: every read goes to AWS;
- AWS-extension-like: a TTL cache, but concurrent misses each call AWS, no refresh-ahead, no
  stale-if-error (what the AWS extension does);
- ours: the defaults (coalescing, refresh-ahead, stale-if-error, throttling backoff).

It prints, per configuration: upstream calls per second, throttled calls, and the reads clients
saw fail. Usage: scripts/fleet-sim [--daemons 8] [--seconds 20] [--quota 40] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import REPO, TOKEN, TOKEN_HEADER, FakeAws, daemon_env, free_port

MODES: dict[str, dict[str, str]] = {
    "caching off": {"PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED": "false"},
    "AWS-extension-like": {"PARAMETERS_SECRETS_EXTENSION_COALESCE": "false",
                           "PARAMETERS_SECRETS_EXTENSION_REFRESH_AHEAD": "0",
                           "PARAMETERS_SECRETS_EXTENSION_STALE_IF_ERROR_SECS": "0"},
    "ours": {},
}


async def wait_ready(port: int, deadline: float) -> None:
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/ping") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.02)
    raise RuntimeError("a daemon never answered /ping")


async def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    upstream = FakeAws(value_size=100, quota=args.quota)
    runner, url = await upstream.start()
    ports = [free_port() for _ in range(args.daemons)]
    settings = {"SSM_PARAMETER_STORE_TTL": str(args.ttl), **MODES[mode]}
    daemons = [subprocess.Popen(
        [sys.executable, "-m", "sidecar"], cwd=REPO, stdout=subprocess.DEVNULL,
        env=daemon_env(url, port, **settings)) for port in ports]
    outcomes: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + 30
        await asyncio.gather(*(wait_ready(port, deadline) for port in ports))
        upstream.reset()
        keys = [f"/fleet/key{index}" for index in range(args.keys)]
        started = time.monotonic()
        end = started + args.seconds
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                         headers={TOKEN_HEADER: TOKEN}) as s:
            async def client(port: int, seed: int) -> None:
                rng = random.Random(seed)
                interval = 1.0 / args.rate
                next_at = time.monotonic()
                while next_at < end and time.monotonic() < end:
                    # A few hot keys (the app's config) take a share of the reads, as in
                    # real services; the rest spread over all keys.
                    hot = rng.random() < args.hot_share
                    key = rng.choice(keys[:args.hot_keys] if hot else keys)
                    try:
                        async with s.get(f"http://127.0.0.1:{port}/systemsmanager/parameters/"
                                         f"get?name={key}") as response:
                            await response.read()
                            outcomes["ok" if response.status == 200 else "error"] += 1
                    except (aiohttp.ClientError, TimeoutError):
                        outcomes["error"] += 1
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))

            await asyncio.gather(*(client(port, index * 100 + worker)
                                   for index, port in enumerate(ports)
                                   for worker in range(args.clients)))
        elapsed = time.monotonic() - started
    finally:
        for daemon in daemons:
            daemon.terminate()
        for daemon in daemons:
            daemon.wait(10)
        await runner.cleanup()
    reads = outcomes["ok"] + outcomes["error"]
    calls = sum(upstream.calls.values())
    return {"mode": mode, "reads": reads, "client_errors": outcomes["error"],
            "upstream_calls": calls, "throttled": upstream.throttled,
            "upstream_calls_per_s": round(calls / elapsed, 1),
            "error_rate": round(outcomes["error"] / reads, 4) if reads else 0.0}


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"{args.daemons} daemons sharing a {args.quota:g} calls/s quota, "
             f"{args.clients} clients each at {args.rate:g} reads/s over {args.keys} keys "
             f"({args.hot_share:.0%} of reads on {args.hot_keys} hot keys), "
             f"TTL {args.ttl} s, {args.seconds} s", "",
             "| configuration | client reads | upstream calls/s | throttled calls "
             "| client-visible errors |", "|---|---|---|---|---|"]
    for result in results:
        lines.append(f"| {result['mode']} | {result['reads']} | {result['upstream_calls_per_s']} "
                     f"| {result['throttled']} | {result['client_errors']} "
                     f"({result['error_rate']:.1%}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/fleet-sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--daemons", type=int, default=8)
    parser.add_argument("--clients", type=int, default=16, help="clients per daemon")
    parser.add_argument("--rate", type=float, default=2.5, help="reads/s per client")
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--hot-keys", type=int, default=2)
    parser.add_argument("--hot-share", type=float, default=0.5,
                        help="share of reads that go to the hot keys")
    parser.add_argument("--quota", type=float, default=40.0, help="upstream calls/s allowed")
    parser.add_argument("--ttl", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [asyncio.run(run_mode(mode, args)) for mode in MODES]
    print(json.dumps(results, indent=2) if args.json else table(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
