"""The in-process cache and the guarded access to Kinto's cache backend."""

import time

import pytest

from kinto_fxa.cache import LocalCache, SafeCache, whole_seconds


class TestLocalCache:
    def test_expired_entries_are_gone(self):
        cache = LocalCache(10)
        cache.set("a", 1, time.time() + 60)
        cache.set("b", 2, time.time() - 1)  # Already expired: not even stored.
        assert (cache.get("a"), cache.get("b"), len(cache)) == (1, None, 1)
        cache.set("a", 1, time.time() + 0.05)
        time.sleep(0.1)
        assert cache.get("a") is None

    def test_an_expired_entry_is_dropped_when_read(self):
        cache = LocalCache(10)
        cache.set("a", 1, time.time() + 0.05)
        cache.set("b", 2, time.time() + 60)
        time.sleep(0.1)
        assert (len(cache), cache.get("a"), len(cache), cache.get("b")) == (2, None, 1, 2)

    def test_bounded_least_recently_used_first(self):
        cache = LocalCache(2)
        for key in "abc":
            cache.set(key, key, time.time() + 60)
        assert [cache.get(k) for k in "abc"] == [None, "b", "c"]

    def test_size_zero_disables_it(self):
        cache = LocalCache(0)
        cache.set("a", 1, time.time() + 60)
        assert cache.get("a") is None

    def test_pop(self):
        cache = LocalCache(2)
        cache.set("a", 1, time.time() + 60)
        cache.pop("a")
        cache.pop("missing")
        assert cache.get("a") is None


class TestSafeCache:
    def test_non_positive_ttl_is_not_written(self):
        class Backend:
            def set(self, *args):
                raise AssertionError("must not be called")

        SafeCache(Backend()).set("k", "v", 0)

    def test_ttls_are_rounded_up_to_whole_seconds(self):
        written = []

        class Backend:
            def set(self, key, value, ttl):
                written.append(ttl)

        SafeCache(Backend()).set("k", "v", 0.2)  # int() would make it 0: "forever".
        SafeCache(Backend()).set("k", "v", 2.5)
        assert written == [1, 3]
        assert all(isinstance(ttl, int) for ttl in written)
        assert whole_seconds(3.0) == 3


def test_metrics_refuse_other_labels():
    from kinto_fxa import metrics

    recorded = []

    class Service:
        def count(self, name, unique):
            recorded.append((name, unique))

    sent = metrics.Metrics(lambda: Service())
    sent.count(metrics.JWKS_REFRESHES, trigger="initial", outcome="ok")
    assert recorded == [(metrics.JWKS_REFRESHES, [("trigger", "initial"), ("outcome", "ok")])]
    with pytest.raises(ValueError, match="takes the labels"):
        sent.count(metrics.JWKS_REFRESHES, outcome="ok")
