"""The cache policy with a fake clock and a scripted upstream (our own interface, not botocore)."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.config import Settings
from sidecar.errors import ApiError
from sidecar.key import SSM, Key
from sidecar.resolver import Resolver
from sidecar.upstream import Upstream

KEY = Key(SSM, "/k")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedUpstream(Upstream):
    """Answers from a list: bytes are values, ApiErrors are raised."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.answers: list[bytes | ApiError] = []
        self.fetches = 0

    async def fetch(self, key: Key) -> bytes:
        self.fetches += 1
        await asyncio.sleep(0)
        answer = self.answers.pop(0) if self.answers else b"default"
        if isinstance(answer, ApiError):
            raise answer
        return answer


def make(jitter: float = 0.0, **overrides: object) -> tuple[Resolver, ScriptedUpstream, Clock]:
    settings = Settings(token="t", token_source="test", ssm_ttl=100, **overrides)  # type: ignore[arg-type]
    upstream = ScriptedUpstream(settings)
    clock = Clock()
    return Resolver(settings, upstream, clock=clock, jitter=lambda: jitter), upstream, clock


THROTTLED = ApiError(400, "ThrottlingException", "Rate exceeded", transient=True)


@pytest.mark.parametrize(("jitter", "life"), [(0.0, 100.0), (0.5, 95.0), (1.0, 90.0)])
async def test_ttl_is_shortened_by_up_to_ten_percent(jitter: float, life: float) -> None:
    resolver, _, clock = make(jitter=jitter)
    await resolver.read(KEY)
    entry = resolver.cache.get(KEY)
    assert entry is not None
    assert entry.fresh_until - clock.now == pytest.approx(life)


async def test_refresh_ahead_refreshes_in_the_background() -> None:
    resolver, upstream, clock = make(refresh_ahead=0.5)
    upstream.answers = [b"one", b"two"]
    assert (await resolver.read(KEY)).state == "miss"
    clock.now += 40
    assert (await resolver.read(KEY)).body == b"one"  # before the refresh point: nothing
    clock.now += 20
    await resolver.read(KEY)  # in the window, but at this pace another read comes in time
    await asyncio.sleep(0.01)
    assert upstream.fetches == 1
    clock.now += 25
    answer = await resolver.read(KEY)  # the next read, 25 s on, would come after expiry
    assert (answer.state, answer.body) == ("hit", b"one")  # the reader does not wait
    await asyncio.sleep(0.01)
    assert upstream.fetches == 2
    answer = await resolver.read(KEY)
    assert (answer.state, answer.body, answer.age) == ("hit", b"two", 0)


async def test_a_busy_key_is_refreshed_just_before_expiry() -> None:
    resolver, upstream, clock = make(refresh_ahead=0.8)
    await resolver.read(KEY)
    refreshed_at = None
    while refreshed_at is None and clock.now < 1100:
        clock.now += 0.5
        await resolver.read(KEY)
        await asyncio.sleep(0)
        if upstream.fetches == 2:
            refreshed_at = clock.now - 1000
    assert refreshed_at is not None
    assert 99.0 <= refreshed_at < 100.0  # not at 80: the last reads before expiry do it


@pytest.mark.parametrize("ahead", [0.0, 1.0])
async def test_refresh_ahead_off(ahead: float) -> None:
    resolver, upstream, clock = make(refresh_ahead=ahead)
    await resolver.read(KEY)
    clock.now += 99
    await resolver.read(KEY)
    await asyncio.sleep(0.01)
    assert upstream.fetches == 1


async def test_stale_backoff_then_recovery() -> None:
    resolver, upstream, clock = make(stale_if_error_secs=60)
    upstream.answers = [b"old", THROTTLED, THROTTLED, b"new"]
    await resolver.read(KEY)
    clock.now += 101
    assert (await resolver.read(KEY)).state == "stale"  # tried, failed: 1 s backoff
    assert (await resolver.read(KEY)).state == "stale"  # within the backoff: not tried
    assert upstream.fetches == 2
    clock.now += 1.1
    assert (await resolver.read(KEY)).state == "stale"  # tried again, failed: 2 s backoff
    clock.now += 1.1
    assert (await resolver.read(KEY)).state == "stale"
    assert upstream.fetches == 3
    clock.now += 1.0
    answer = await resolver.read(KEY)
    assert (answer.state, answer.body) == ("miss", b"new")
    assert resolver.cache.get(KEY).failures == 0  # type: ignore[union-attr]


async def test_stale_window_ends() -> None:
    resolver, upstream, clock = make(stale_if_error_secs=10)
    upstream.answers = [b"old", THROTTLED]
    await resolver.read(KEY)
    clock.now += 100 + 11
    with pytest.raises(ApiError, match="Throttling"):
        await resolver.read(KEY)


async def test_definite_error_drops_the_entry() -> None:
    resolver, upstream, clock = make()
    upstream.answers = [b"old", ApiError(400, "ParameterNotFound", "gone")]
    await resolver.read(KEY)
    clock.now += 101
    with pytest.raises(ApiError, match="ParameterNotFound"):
        await resolver.read(KEY)
    assert KEY not in resolver.cache


async def test_concurrent_misses_share_one_fetch() -> None:
    resolver, upstream, _ = make()
    upstream.answers = [b"shared"]
    answers = await asyncio.gather(*(resolver.read(KEY) for _ in range(100)))
    assert upstream.fetches == 1
    assert {answer.body for answer in answers} == {b"shared"}
