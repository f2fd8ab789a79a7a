"""The cache policy with a fake clock and a scripted upstream (our own interface, not botocore)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sidecar.aws.upstream import Upstream
from sidecar.cache.resolver import Resolver
from sidecar.config.settings import Settings
from sidecar.core.errors import ApiError
from sidecar.core.key import SSM, Key

KEY = Key(SSM, "/k")


class Clock:
    """The monotonic clock; ``wall`` is the wall clock, moving with it unless a test jumps it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall_offset = 1.7e9

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.wall_offset


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
    resolver = Resolver(settings, upstream, clock=clock, jitter=lambda: jitter, wall=clock.wall)
    return resolver, upstream, clock


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


async def test_stale_backoff_then_recovery_in_the_background() -> None:
    resolver, upstream, clock = make(stale_if_error_secs=60)
    upstream.answers = [b"old", THROTTLED, THROTTLED, b"new"]
    await resolver.read(KEY)
    clock.now += 101
    assert (await resolver.read(KEY)).state == "stale"  # tried, failed: 1 s backoff
    assert (await resolver.read(KEY)).state == "stale"  # within the backoff: not tried
    assert upstream.fetches == 2
    clock.now += 1.1
    # The backoff ran out: the retry runs in the background; the reader does not wait for it.
    answer = await resolver.read(KEY)
    assert (answer.state, answer.body) == ("stale", b"old")
    assert upstream.fetches == 2
    await asyncio.sleep(0.01)
    assert upstream.fetches == 3  # it failed too: 2 s backoff
    clock.now += 1.1
    assert (await resolver.read(KEY)).state == "stale"
    await asyncio.sleep(0.01)
    assert upstream.fetches == 3
    clock.now += 1.0
    assert (await resolver.read(KEY)).state == "stale"
    await asyncio.sleep(0.01)
    answer = await resolver.read(KEY)
    assert (answer.state, answer.body) == ("hit", b"new")
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


class GatedUpstream(ScriptedUpstream):
    """Each fetch waits at its own gate, so a test decides the order in which fetches land."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.gates: list[asyncio.Event] = []

    async def fetch(self, key: Key) -> bytes:
        gate = asyncio.Event()
        self.gates.append(gate)
        answer = self.answers.pop(0) if self.answers else b"default"
        self.fetches += 1
        await gate.wait()
        if isinstance(answer, ApiError):
            raise answer
        return answer


def make_gated(**overrides: object) -> tuple[Resolver, GatedUpstream, Clock]:
    settings = Settings(token="t", token_source="test", ssm_ttl=100, **overrides)  # type: ignore[arg-type]
    upstream = GatedUpstream(settings)
    clock = Clock()
    resolver = Resolver(settings, upstream, clock=clock, jitter=lambda: 0.0, wall=clock.wall)
    return resolver, upstream, clock


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def _prime(resolver: Resolver, upstream: GatedUpstream, body: bytes) -> None:
    upstream.answers.append(body)
    reading = asyncio.ensure_future(resolver.read(KEY))
    await _until(lambda: len(upstream.gates) == 1)
    upstream.gates[0].set()
    await reading


async def test_a_late_refresh_never_replaces_a_newer_refresh_now() -> None:
    resolver, upstream, clock = make_gated(refresh_ahead=0.5)
    await _prime(resolver, upstream, b"v1")
    upstream.answers += [b"v1-late", b"v2"]
    clock.now += 99  # the refresh window: this hit starts a background refresh
    assert (await resolver.read(KEY)).state == "hit"
    await _until(lambda: len(upstream.gates) == 2)
    rotated = asyncio.ensure_future(resolver.read(KEY, refresh_now=True))
    await _until(lambda: len(upstream.gates) == 3)
    upstream.gates[2].set()
    assert (await rotated).body == b"v2"
    upstream.gates[1].set()  # the refresh that started first lands last
    await _until(lambda: KEY not in resolver._in_flight)
    answer = await resolver.read(KEY)
    assert (answer.state, answer.body) == ("hit", b"v2")


async def test_a_late_refresh_never_brings_back_a_deleted_key() -> None:
    resolver, upstream, clock = make_gated(refresh_ahead=0.5)
    await _prime(resolver, upstream, b"v1")
    upstream.answers += [b"v1-late", ApiError(400, "ParameterNotFound", "gone")]
    clock.now += 99
    await resolver.read(KEY)
    await _until(lambda: len(upstream.gates) == 2)
    deleted = asyncio.ensure_future(resolver.read(KEY, refresh_now=True))
    await _until(lambda: len(upstream.gates) == 3)
    upstream.gates[2].set()
    with pytest.raises(ApiError, match="ParameterNotFound"):
        await deleted
    upstream.gates[1].set()
    await _until(lambda: KEY not in resolver._in_flight)
    assert KEY not in resolver.cache


async def test_a_late_refresh_never_reinserts_an_evicted_key() -> None:
    resolver, upstream, clock = make_gated(refresh_ahead=0.5, cache_items=1)
    await _prime(resolver, upstream, b"v1")
    upstream.answers += [b"v1-late", b"other"]
    clock.now += 99
    await resolver.read(KEY)
    await _until(lambda: len(upstream.gates) == 2)
    other = Key(SSM, "/other")
    reading = asyncio.ensure_future(resolver.read(other))
    await _until(lambda: len(upstream.gates) == 3)
    upstream.gates[2].set()
    await reading  # evicts KEY (one item allowed)
    upstream.gates[1].set()
    await _until(lambda: KEY not in resolver._in_flight)
    assert KEY not in resolver.cache
    assert other in resolver.cache  # the key just read stays


async def test_readers_get_stale_while_a_refresh_lands_late() -> None:
    resolver, upstream, clock = make_gated(refresh_ahead=0.5)
    await _prime(resolver, upstream, b"v1")
    upstream.answers.append(b"v2")
    clock.now += 99
    await resolver.read(KEY)  # starts the refresh, which AWS then holds
    await _until(lambda: len(upstream.gates) == 2)
    clock.now += 5  # past expiry, the refresh still out
    answer = await resolver.read(KEY)  # would hang here if the reader waited
    assert (answer.state, answer.body) == ("stale", b"v1")
    upstream.gates[1].set()
    await _until(lambda: KEY not in resolver._in_flight)
    assert (await resolver.read(KEY)).body == b"v2"


async def test_a_clock_jump_ends_freshness() -> None:
    resolver, upstream, clock = make()
    upstream.answers = [b"before snapshot", b"after restore"]
    await resolver.read(KEY)
    clock.wall_offset += 3600  # restored an hour later; the monotonic clock did not move
    answer = await resolver.read(KEY)
    assert (answer.state, answer.body) == ("miss", b"after restore")
    assert (await resolver.read(KEY)).state == "hit"
