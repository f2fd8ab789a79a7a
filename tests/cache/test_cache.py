"""The LRU on its own: bounds by items and bytes, eviction by least recent *read*."""

from __future__ import annotations

from sidecar.cache.store import ENTRY_OVERHEAD, Cache, Entry
from sidecar.core.key import SSM, Key


def entry(size: int) -> Entry:
    return Entry(body=b"x" * size, fetched_at=0.0, fresh_until=1.0, refresh_at=1.0,
                 keep_until=2.0)


def cost(body: int) -> int:
    """What an entry with a ``body``-byte body counts for against the byte bound."""
    return body + ENTRY_OVERHEAD


def key(name: str) -> Key:
    return Key(SSM, name)


def test_item_bound_evicts_least_recently_read() -> None:
    cache = Cache(max_items=2, max_bytes=10_000)
    cache.put(key("a"), entry(1))
    cache.put(key("b"), entry(1))
    assert cache.get(key("a")) is not None  # "a" is now the most recently read
    cache.put(key("c"), entry(1))
    assert key("b") not in cache
    assert key("a") in cache
    assert key("c") in cache
    assert len(cache) == 2


def test_byte_bound_evicts_least_recently_read() -> None:
    cache = Cache(max_items=100, max_bytes=3 * cost(100))
    for name in "abc":
        cache.put(key(name), entry(100))
    assert cache.bytes_held == 3 * cost(100)
    cache.get(key("a"))
    cache.put(key("d"), entry(100))
    assert key("b") not in cache
    assert {k.name for k in (key("a"), key("c"), key("d")) if k in cache} == {"a", "c", "d"}
    assert cache.bytes_held == 3 * cost(100)


def test_body_larger_than_the_budget_is_not_cached() -> None:
    cache = Cache(max_items=10, max_bytes=cost(50))
    cache.put(key("small"), entry(10))
    cache.put(key("huge"), entry(51))
    assert key("huge") not in cache
    assert key("small") in cache


def test_replacing_an_entry_updates_the_byte_count() -> None:
    cache = Cache(max_items=10, max_bytes=10_000)
    cache.put(key("a"), entry(100))
    cache.put(key("a"), entry(300))
    assert cache.bytes_held == cost(300)
    assert len(cache) == 1


def test_headers_kept_with_a_body_count_too() -> None:
    cache = Cache(max_items=10, max_bytes=10_000)
    held = entry(10)
    held.meta = (("ETag", '"abc"'),)
    cache.put(key("s3"), held)
    assert cache.bytes_held == cost(10) + len("ETag") + len('"abc"')


def test_zero_items_holds_nothing() -> None:
    cache = Cache(max_items=0, max_bytes=1000)
    cache.put(key("a"), entry(1))
    assert len(cache) == 0
    assert cache.get(key("a")) is None


def test_selectors_make_distinct_keys() -> None:
    cache = Cache(max_items=10, max_bytes=10_000)
    variants = [Key(SSM, "n"), Key(SSM, "n", version="1"), Key(SSM, "n", label="l"),
                Key(SSM, "n", with_decryption=True), Key("secretsmanager", "n"),
                Key("secretsmanager", "n", version_id="v"),
                Key("secretsmanager", "n", version_stage="AWSPREVIOUS")]
    for index, variant in enumerate(variants):
        cache.put(variant, entry(index + 1))
    assert len(cache) == len(variants)
    assert [len(cache.get(v).body) for v in variants] == list(range(1, 8))  # type: ignore[union-attr]
