"""Role clients in isolation: one AssumeRole per role however many readers arrive at once,
credentials renewed by AssumeRole before they expire, and the max_roles bound counting only the
roles that were assumed. (Reads through the daemon with moto's STS are in test_agent.py.)"""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiobotocore.session import AioSession

from sidecar.aws.roles import Metadata, RoleClients
from sidecar.core.errors import ApiError

ROLE_A = "arn:aws:iam::111111111111:role/a"
ROLE_B = "arn:aws:iam::222222222222:role/b"


class FakeSts:
    def __init__(self, lifetime: timedelta) -> None:
        self.calls: list[str] = []
        self.lifetime = lifetime
        self.gate = asyncio.Event()
        self.gate.set()
        self.refuse: set[str] = set()

    async def assume(self, role: str) -> Metadata:
        self.calls.append(role)
        await self.gate.wait()
        if role in self.refuse:
            raise ApiError(403, "AccessDeniedException", f"the role {role} could not be assumed")
        expiry = datetime.now(UTC) + self.lifetime
        return {"access_key": f"AK{len(self.calls)}", "secret_key": "s", "token": "t",
                "expiry_time": expiry.isoformat()}


async def _client(session: AioSession, service: str, region: str | None = None) -> Any:
    return session  # the session stands in for a client: the test reads its credentials


@pytest.mark.timeout(30)
async def test_concurrent_first_reads_assume_the_role_once() -> None:
    sts = FakeSts(timedelta(hours=1))
    roles = RoleClients(sts.assume, AioSession, _client, max_roles=5)
    sts.gate.clear()
    waiting = [asyncio.create_task(roles.client("secretsmanager", ROLE_A)) for _ in range(10)]
    await asyncio.sleep(0)
    sts.gate.set()
    sessions = await asyncio.gather(*waiting)
    assert sts.calls == [ROLE_A]
    assert len({id(session) for session in sessions}) == 1
    assert len(roles) == 1


@pytest.mark.timeout(30)
async def test_credentials_are_renewed_before_they_expire() -> None:
    sts = FakeSts(timedelta(minutes=5))  # inside botocore's 10-minute mandatory window
    roles = RoleClients(sts.assume, AioSession, _client)
    session = await roles.client("ssm", ROLE_A)
    credentials = await session.get_credentials()
    first = await credentials.get_frozen_credentials()
    assert sts.calls == [ROLE_A, ROLE_A]  # renewed with AssumeRole, not used as they were
    assert first.access_key == "AK2"
    lasting = FakeSts(timedelta(hours=1))
    steady = RoleClients(lasting.assume, AioSession, _client)
    kept = await (await (await steady.client("ssm", ROLE_A)).get_credentials()
                  ).get_frozen_credentials()
    assert kept.access_key == "AK1" and lasting.calls == [ROLE_A]  # no renewal needed yet


@pytest.mark.timeout(30)
async def test_max_roles_counts_only_assumed_roles() -> None:
    sts = FakeSts(timedelta(hours=1))
    sts.refuse.add(ROLE_B)
    roles = RoleClients(sts.assume, AioSession, _client, max_roles=1)
    with pytest.raises(ApiError) as denied:
        await roles.client("secretsmanager", ROLE_B)
    assert denied.value.status == 403
    await roles.client("secretsmanager", ROLE_A)  # the refusal did not use the only slot
    await roles.client("ssm", ROLE_A)  # another service of a known role: no new role
    with pytest.raises(ApiError) as over:
        await roles.client("secretsmanager", "arn:aws:iam::333333333333:role/c")
    assert over.value.status == 400 and over.value.code == "MaxRolesExceeded"
    assert sts.calls == [ROLE_B, ROLE_A]


@pytest.mark.timeout(30)
async def test_prefetch_waits_a_random_jitter_and_keeps_within_the_buffer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sidecar.cache import tag_prefetch
    from sidecar.config.settings import Settings
    from sidecar.core.key import SECRETS, Key

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("sidecar.cache.tag_prefetch.random.uniform",
                        lambda low, high: (low + high) / 2)
    keys = (*[Key(SECRETS, f"s{index}") for index in range(5)], Key(SECRETS, "r", role=ROLE_A))
    settings = Settings(token="t", token_source="AWS_TOKEN", cache_items=5,
                        prefetch=keys, prefetch_jitter_secs=8, prefetch_buffer_ratio=0.6)
    fetched: list[tuple[Key, ...]] = []

    class Resolver:
        async def prefetch(self, wanted: tuple[Key, ...]) -> None:
            fetched.append(wanted)

    # (asyncio.sleep itself is never patched: the fault proxy's loop runs in this process.)
    await tag_prefetch.prefetch(settings, Resolver(), object(), sleep)  # type: ignore[arg-type]
    assert slept == [4.0]  # a random delay within max_jitter_seconds, before any call
    # 0.6 of 5 items: 3 per role, in the order listed.
    assert fetched == [(*keys[:3], keys[5])]


@pytest.mark.timeout(30)
async def test_a_role_whose_assume_role_failed_after_the_read_timed_out_does_not_count() -> None:
    """Review S3-10: the read gives up (its timeout) before AssumeRole fails; the failed role
    must not keep a ``max_roles`` slot, and its failure is not logged as never retrieved."""
    loop = asyncio.get_running_loop()
    unretrieved: list[str] = []
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context["message"]))

    async def slow_refusal(role: str) -> Metadata:
        await asyncio.sleep(0.3)
        raise ApiError(403, "AccessDeniedException", f"the role {role} could not be assumed")

    roles = RoleClients(slow_refusal, AioSession, _client, max_roles=2)
    for role in (ROLE_A, ROLE_B):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await roles.client("secretsmanager", role)
    deadline = loop.time() + 5
    while len(roles) and loop.time() < deadline:  # the two AssumeRole calls end at 0.3 s
        await asyncio.sleep(0.02)
    assert len(roles) == 0
    with pytest.raises(ApiError) as third:
        await roles.client("secretsmanager", "arn:aws:iam::333333333333:role/c")
    assert third.value.code == "AccessDeniedException"  # tried, not refused as MaxRolesExceeded
    gc.collect()  # a failure nobody retrieved is reported when its task is collected
    await asyncio.sleep(0)
    assert not [message for message in unretrieved if "never retrieved" in message]
