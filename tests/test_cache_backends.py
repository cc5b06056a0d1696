"""kinto-fxa on each of Kinto's production cache backends: PostgreSQL (see the ``backend``
fixture elsewhere), memcached (a real server, Debian's ``memcached``) and the capped memory
backend, whose evictions must never bring a revoked token back."""

import pytest
import requests
import transaction

from kinto_fxa.accounts import revoke_tokens_before
from kinto_fxa.cache import SafeCache
from tests.conftest import kinto_settings
from tests.helpers import auth, wait_until


def memcached_settings(hosts: str) -> dict[str, str]:
    return {"cache_backend": "kinto.core.cache.memcached", "cache_hosts": hosts}


@pytest.fixture
def memcached_app(make_app, fxa_server, memcached_hosts):
    def build(**extra):
        return make_app(
            kinto_settings(fxa_server.oauth_uri, **memcached_settings(memcached_hosts), **extra)
        )

    return build


class TestMemcached:
    def test_one_fxa_verification_serves_every_process(self, memcached_app, fxa_server):
        first, second = memcached_app(), memcached_app()
        token = fxa_server.mint_opaque(fxa_server.uid_for("alice@example.com"))
        fxa_server.reset_calls()
        first.get("/v1/", headers=auth(token), status=200)
        user = second.get("/v1/", headers=auth(token), status=200).json["user"]
        assert user["id"] == f"fxa:{fxa_server.uid_for('alice@example.com')}"
        assert fxa_server.calls["/v1/verify"] == 1

    def test_a_refusal_is_shared(self, memcached_app, fxa_server):
        first, second = memcached_app(), memcached_app()
        token = fxa_server.mint_opaque(fxa_server.uid_for("alice@example.com"))
        requests.post(fxa_server.oauth_uri + "/destroy", json={"token": token}, timeout=5)
        fxa_server.reset_calls()
        first.get("/v1/buckets", headers=auth(token), status=401)
        second.get("/v1/buckets", headers=auth(token), status=401)
        assert fxa_server.calls["/v1/verify"] == 1

    def test_a_lifetime_under_a_second_still_expires(self, memcached_app):
        # Kinto's memcached backend truncates the TTL with int(), and to memcached a TTL of
        # 0 means "never expires": a token cached in its last second must not live forever.
        cache = SafeCache(memcached_app().app.registry.cache)
        cache.set("fxa-test:short", {"uid": "x"}, 0.4)
        assert cache.get("fxa-test:short") == {"uid": "x"}
        wait_until(lambda: cache.get("fxa-test:short") is None, "the entry to expire", 10)

    def test_login_states_round_trip(self, memcached_app):
        cache = memcached_app().app.registry.cache
        cache.set("fxa-test:state", {"redirect": "https://app.test/#"}, 60)
        assert cache.delete("fxa-test:state") == {"redirect": "https://app.test/#"}
        assert cache.delete("fxa-test:state") is None  # Consumed once.


class TestMemoryCacheEvictions:
    def test_junk_tokens_cannot_evict_a_revocation(self, make_app, fxa_server):
        app = make_app(
            kinto_settings(fxa_server.oauth_uri, **{"fxa-oauth.local_cache_ttl_seconds": 0})
        )
        uid = fxa_server.uid_for("alice@example.com")
        old = auth(fxa_server.mint_jwt(uid, generation=1_000_000))
        app.get("/v1/buckets", headers=old, status=200)
        with transaction.manager:
            revoke_tokens_before(app.app.registry, uid, 2_000_000)
        app.get("/v1/buckets", headers=old, status=401)

        # Fill Kinto's capped memory cache (512 KB) many times over.
        cache = app.app.registry.cache
        for i in range(3000):
            cache.set(f"junk:{i}", "x" * 400, 600)
        assert cache.get("junk:0") is None  # Evicted: the cache really overflowed.
        app.get("/v1/buckets", headers=old, status=401)
        fresh = auth(fxa_server.mint_jwt(uid, generation=2_000_000))
        app.get("/v1/buckets", headers=fresh, status=200)
