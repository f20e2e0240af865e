from __future__ import annotations

from services.common.ttl_cache import TtlCache
from services.gateway.auth import sign_request
from tests.polling import poll


def test_the_signature_covers_method_path_user_and_time() -> None:
    base = sign_request("k", "100", "GET", "/a?b=1", "u1")
    assert base == sign_request("k", "100", "get", "/a?b=1", "u1")
    for changed in (
        sign_request("k", "101", "GET", "/a?b=1", "u1"),
        sign_request("k", "100", "POST", "/a?b=1", "u1"),
        sign_request("k", "100", "GET", "/a?b=2", "u1"),
        sign_request("k", "100", "GET", "/a?b=1", "u2"),
        sign_request("other", "100", "GET", "/a?b=1", "u1"),
    ):
        assert changed != base


async def test_ttl_cache_forgets_expired_entries() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl=0.05)
    cache.put("a", 1)
    assert cache.get("a") == 1
    await poll(lambda: cache.get("a") is None, within=2, interval=0.01, message="the entry outlived its ttl")


def test_ttl_cache_is_bounded() -> None:
    cache: TtlCache[int, int] = TtlCache(ttl=60, max_entries=3)
    for i in range(10):
        cache.put(i, i)
    assert [cache.get(i) for i in range(10)] == [None] * 7 + [7, 8, 9]


def test_a_zero_ttl_caches_nothing() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl=0)
    cache.put("a", 1)
    assert cache.get("a") is None
