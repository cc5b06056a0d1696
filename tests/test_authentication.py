"""The bearer-token policy, driven through a real Kinto app against the local FxA server."""

import time

import pytest
import requests
from pyramid.exceptions import ConfigurationError

from kinto_fxa.authentication import CACHE_PREFIX
from tests.conftest import backend_settings, kinto_settings


NOTES = "https://identity.mozilla.com/apps/notes"


def auth(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app(make_app, fxa_server, backend):
    return make_app(kinto_settings(fxa_server.oauth_uri, **backend))


@pytest.fixture
def memory_app(make_app, fxa_server):
    def factory(**extra):
        return make_app(kinto_settings(fxa_server.oauth_uri, **extra))

    return factory


def whoami(app, token, status=200):
    return app.get("/v1/", headers=auth(token), status=status)


class TestAuthentication:
    def test_jwt_token_authenticates_with_the_fxa_uid(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        body = whoami(app, fxa_server.mint_jwt(uid)).json
        assert body["user"]["id"] == f"fxa:{uid}"

    def test_opaque_token_is_checked_by_fxa_verify(self, app, fxa_server):
        uid = fxa_server.uid_for("bob@example.com")
        body = whoami(app, fxa_server.mint_opaque(uid)).json
        assert body["user"]["id"] == f"fxa:{uid}"
        assert fxa_server.calls["/v1/verify"] == 1
        assert fxa_server.calls["/v1/jwks"] == 0

    @pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
    def test_scheme_is_case_insensitive(self, app, fxa_server, scheme):
        token = fxa_server.mint_jwt(fxa_server.uid_for("a@b.c"))
        headers = {"Authorization": f"{scheme} {token}"}
        assert app.get("/v1/", headers=headers).json["user"]["id"].startswith("fxa:")

    @pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Token abc", "Basic Ym9iOnM="])
    def test_other_schemes_are_left_to_other_policies(self, app, fxa_server, header):
        resp = app.get("/v1/", headers={"Authorization": header})
        assert resp.json.get("user", {}).get("id", "").startswith("fxa:") is False
        assert fxa_server.calls.total() == 0

    def test_basicauth_still_works_next_to_fxa(self, app):
        resp = app.get("/v1/", headers={"Authorization": "Basic Ym9iOnM="})
        assert resp.json["user"]["id"].startswith("basicauth:")

    def test_the_user_can_use_their_default_bucket(self, app, fxa_server):
        headers = auth(fxa_server.mint_jwt(fxa_server.uid_for("alice@example.com")))
        app.put_json(
            "/v1/buckets/default/collections/notes/records/r1", {"data": {}}, headers=headers
        )
        records = app.get("/v1/buckets/default/collections/notes/records", headers=headers)
        assert [r["id"] for r in records.json["data"]] == ["r1"]


class TestRefusedTokens:
    def assert_refused(self, app, token, realm="Realm"):
        resp = app.get("/v1/buckets", headers=auth(token), status=401)
        assert resp.json["errno"] == 104
        challenges = resp.headers.getall("WWW-Authenticate")
        assert f'Bearer realm="{realm}", error="invalid_token"' in challenges
        return resp

    def test_no_token_gets_a_plain_bearer_challenge(self, app):
        resp = app.get("/v1/buckets", status=401)
        challenges = resp.headers.getall("WWW-Authenticate")
        assert 'Bearer realm="Realm"' in challenges
        assert not any("invalid_token" in c for c in challenges)

    def test_realm_comes_from_the_multiauth_settings(self, memory_app, fxa_server):
        app = memory_app(**{"multiauth.policy.fxa.realm": "Notes"})
        self.assert_refused(app, "garbage", realm="Notes")

    def test_garbage_token(self, app, fxa_server):
        self.assert_refused(app, "not-a-token")
        assert fxa_server.calls.total() == 0  # Neither a JWT nor an opaque token.

    def test_expired_jwt(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        token = fxa_server.mint_jwt(uid, iat=int(time.time()) - 7200, ttl=60)
        self.assert_refused(app, token)

    def test_forged_jwt_with_a_known_kid(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        whoami(app, fxa_server.mint_jwt(uid))  # JWKS now known.
        forged = fxa_server.mint_jwt(uid, signing_key=fxa_server.new_key())
        self.assert_refused(app, forged)

    @pytest.mark.parametrize("uid", ["../admin", "a\x00b", "x" * 65, "ümlaut"])
    def test_signed_token_with_an_unusable_uid(self, app, fxa_server, uid):
        self.assert_refused(app, fxa_server.mint_jwt(uid))

    def test_jwt_of_the_wrong_type(self, app, fxa_server):
        token = fxa_server.mint_jwt(fxa_server.uid_for("a@b.c"), typ="JWT")
        self.assert_refused(app, token)

    def test_under_scoped_token(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        self.assert_refused(app, fxa_server.mint_jwt(uid, scope="openid"))
        self.assert_refused(app, fxa_server.mint_opaque(uid, scope="openid"))

    def test_destroyed_opaque_token(self, app, fxa_server):
        import requests

        token = fxa_server.mint_opaque(fxa_server.uid_for("alice@example.com"))
        requests.post(fxa_server.oauth_uri + "/destroy", json={"token": token}, timeout=5)
        self.assert_refused(app, token)

    @pytest.mark.parametrize("token", ["x" * 10000, "abc\x01def", "abc\u00a0def"])
    def test_malformed_token_is_refused_without_asking_fxa(self, app, fxa_server, token):
        from kinto_fxa.authentication import Authenticator

        assert app.app.registry.fxa_authenticator.authenticate(token) is None
        assert isinstance(app.app.registry.fxa_authenticator, Authenticator)
        self.assert_refused(app, "y" * 9000)
        assert fxa_server.calls.total() == 0

    def test_cached_identity_of_an_unknown_client_is_verified_again(self, app, fxa_server):
        from kinto.core.utils import hmac_digest

        uid = fxa_server.uid_for("alice@example.com")
        token = fxa_server.mint_opaque(uid)
        key = CACHE_PREFIX + hmac_digest("test-secret", token)
        app.app.registry.cache.set(key, {"uid": uid, "client": "gone"}, 60)
        assert whoami(app, token).json["user"]["id"] == f"fxa:{uid}"
        assert fxa_server.calls["/v1/verify"] == 1

    @pytest.mark.parametrize(
        "entry",
        [
            {"client": "default", "exp": None, "verified": 1},  # No uid.
            {"uid": "u", "client": "default", "exp": "soon", "verified": 1},
            {"uid": "u", "client": "default", "exp": 1.0, "iat": None, "verified": 1},
        ],
    )
    def test_unusable_shared_entries_are_verified_again(
        self, make_app, fxa_server, postgresql_url, entry
    ):
        from kinto.core.utils import hmac_digest

        pg = backend_settings("postgresql", postgresql_url)
        app = make_app(kinto_settings(fxa_server.oauth_uri, **pg))
        token = fxa_server.mint_opaque(fxa_server.uid_for("alice@example.com"))
        app.app.registry.cache.set(CACHE_PREFIX + hmac_digest("test-secret", token), entry, 60)
        assert whoami(app, token).json["user"]["id"].startswith("fxa:")  # Not "fxa:u".
        assert fxa_server.calls["/v1/verify"] == 1

    def test_a_shared_entry_older_than_a_cutoff_is_verified_again(
        self, make_app, fxa_server, postgresql_url
    ):
        settings = kinto_settings(
            fxa_server.oauth_uri, **backend_settings("postgresql", postgresql_url)
        )
        first, second = make_app(settings), make_app(settings)
        uid = fxa_server.uid_for("alice@example.com")
        token = fxa_server.mint_opaque(uid)
        whoami(first, token)  # In the shared cache now.
        second.app.registry.fxa_revocations.record(uid, int(time.time() * 1000) + 1)
        whoami(second, token)  # Unknown age, older cutoff: FxA is asked again.
        assert fxa_server.calls["/v1/verify"] == 2

    def test_a_local_opaque_entry_older_than_a_cutoff_is_verified_again(
        self, memory_app, fxa_server
    ):
        app = memory_app()
        uid = fxa_server.uid_for("alice@example.com")
        token = fxa_server.mint_opaque(uid)
        whoami(app, token)
        app.app.registry.fxa_revocations.record(uid, int(time.time() * 1000) + 1)
        whoami(app, token)  # Still valid for FxA (it was not destroyed).
        assert fxa_server.calls["/v1/verify"] == 2
        requests.post(fxa_server.oauth_uri + "/destroy", json={"token": token}, timeout=5)
        app.app.registry.fxa_revocations.record(uid, int(time.time() * 1000) + 2000)
        app.get("/v1/buckets", headers=auth(token), status=401)

    def test_refusal_is_shared_between_processes(self, make_app, fxa_server, backend):
        settings = kinto_settings(fxa_server.oauth_uri, **backend)
        token = fxa_server.mint_opaque(fxa_server.uid_for("a@b.c"), scope="other")
        for app in (make_app(settings), make_app(settings)):
            self.assert_refused(app, token)
        shared = backend["cache_backend"].endswith("postgresql")
        assert fxa_server.calls["/v1/verify"] == (1 if shared else 2)

    def test_same_bad_token_reaches_fxa_once(self, app, fxa_server):
        for _ in range(20):
            self.assert_refused(app, "f" * 64)
        assert fxa_server.calls["/v1/verify"] == 1


class TestJWKS:
    def test_many_tokens_one_jwks_fetch_no_verify(self, app, fxa_server):
        for i in range(25):
            whoami(app, fxa_server.mint_jwt(fxa_server.uid_for(f"user{i}@example.com")))
        assert fxa_server.calls["/v1/jwks"] == 1
        assert fxa_server.calls["/v1/verify"] == 0

    def test_key_rotation_is_picked_up_with_one_refetch(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        whoami(app, fxa_server.mint_jwt(uid))
        fxa_server.rotate_key()
        whoami(app, fxa_server.mint_jwt(uid))
        assert fxa_server.calls["/v1/jwks"] == 2

    def test_unknown_kids_do_not_hammer_fxa(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        whoami(app, fxa_server.mint_jwt(uid))
        for i in range(10):
            token = fxa_server.mint_jwt(uid, kid=f"bogus-{i}", signing_key=fxa_server.new_key())
            app.get("/v1/buckets", headers=auth(token), status=401)
        # One refetch for the first unknown kid, then none within the refresh interval.
        assert fxa_server.calls["/v1/jwks"] == 2

    def test_static_jwks_never_fetches(self, memory_app, fxa_server):
        import json

        app = memory_app(**{"fxa-oauth.jwks": json.dumps(fxa_server.jwks)})
        whoami(app, fxa_server.mint_jwt(fxa_server.uid_for("alice@example.com")))
        assert fxa_server.calls["/v1/jwks"] == 0


class TestFxAFailures:
    @pytest.mark.parametrize("mode", ["down", "5xx", "malformed", "slow"])
    def test_unavailable_fxa_gives_503_not_401(self, memory_app, fxa_server, mode):
        app = memory_app(**{"fxa-oauth.request_timeout_seconds": "0.3"})
        token = fxa_server.mint_opaque(fxa_server.uid_for("alice@example.com"))
        fxa_server.fail(mode, delay=1.0)
        resp = app.get("/v1/buckets", headers=auth(token), status=503)
        assert resp.json["errno"] == 201
        assert resp.json["code"] == 503
        assert "Firefox Accounts" in resp.json["message"]

    @pytest.mark.parametrize("mode", ["5xx", "malformed"])
    def test_no_retries(self, memory_app, fxa_server, mode):
        app = memory_app()
        token = fxa_server.mint_opaque(fxa_server.uid_for("alice@example.com"))
        fxa_server.fail(mode)
        app.get("/v1/buckets", headers=auth(token), status=503)
        assert fxa_server.calls["/v1/verify"] == 1

    def test_jwks_unreachable_gives_503(self, memory_app, fxa_server):
        app = memory_app()
        token = fxa_server.mint_jwt(fxa_server.uid_for("alice@example.com"))
        fxa_server.fail("down")
        app.get("/v1/buckets", headers=auth(token), status=503)

    def test_known_keys_survive_a_failed_refresh(self, memory_app, fxa_server):
        app = memory_app()
        uid = fxa_server.uid_for("alice@example.com")
        whoami(app, fxa_server.mint_jwt(uid))
        fxa_server.fail("5xx", endpoints=("/v1/jwks",))
        # An unknown key id while the keys cannot be fetched may be FxA's next key: 503.
        unknown = fxa_server.mint_jwt(uid, kid="unknown", signing_key=fxa_server.new_key())
        app.get("/v1/buckets", headers=auth(unknown), status=503)
        whoami(app, fxa_server.mint_jwt(fxa_server.uid_for("bob@example.com")))
        fxa_server.fail(None)
        app.get("/v1/buckets", headers=auth(unknown), status=503)  # Within the fetch bound.
        app.app.registry.fxa_verifier.jwks._attempted_at = None  # The interval has passed.
        app.get("/v1/buckets", headers=auth(unknown), status=401)  # Now known not FxA's.

    def test_unavailability_is_not_cached(self, memory_app, fxa_server):
        app = memory_app()
        token = fxa_server.mint_opaque(fxa_server.uid_for("alice@example.com"))
        fxa_server.fail("5xx")
        app.get("/v1/buckets", headers=auth(token), status=503)
        fxa_server.fail(None)
        whoami(app, token)


class TestCaching:
    def test_verification_is_cached_in_the_shared_cache(self, make_app, fxa_server, backend):
        settings = kinto_settings(fxa_server.oauth_uri, **backend)
        first = make_app(settings)
        token = fxa_server.mint_opaque(fxa_server.uid_for("alice@example.com"))
        whoami(first, token)
        whoami(first, token)
        assert fxa_server.calls["/v1/verify"] == 1
        if backend["cache_backend"].endswith("postgresql"):
            # Another process sharing the PostgreSQL cache does not ask FxA again.
            second = make_app(settings)
            whoami(second, token)
            assert fxa_server.calls["/v1/verify"] == 1

    def test_cache_keys_are_hmacs_and_never_the_token(self, app, fxa_server, backend):
        from kinto.core.utils import hmac_digest

        token = fxa_server.mint_opaque(fxa_server.uid_for("alice@example.com"))
        whoami(app, token)
        cache = app.app.registry.cache
        key = CACHE_PREFIX + hmac_digest("test-secret", token)
        if backend["cache_backend"].endswith("memory"):
            assert cache.get(key) is None  # Kinto's small memory cache is left alone.
            return
        assert cache.get(key)["uid"] == fxa_server.uid_for("alice@example.com")
        assert token not in str(cache.get(key))

    def test_jwt_verifications_stay_in_process(self, app, fxa_server):
        from kinto.core.utils import hmac_digest

        token = fxa_server.mint_jwt(fxa_server.uid_for("alice@example.com"), ttl=20)
        whoami(app, token)
        key = CACHE_PREFIX + hmac_digest("test-secret", token)
        assert app.app.registry.cache.get(key) is None

    def test_a_failing_cache_backend_does_not_block_authentication(self, app, fxa_server):
        cache = app.app.registry.cache

        def broken(*args, **kwargs):
            raise RuntimeError("cache is down")

        cache.get = cache.set = broken
        token = fxa_server.mint_opaque(fxa_server.uid_for("alice@example.com"))
        whoami(app, token)

    def test_local_cache_spares_the_shared_one(self, memory_app, fxa_server):
        app = memory_app()
        token = fxa_server.mint_jwt(fxa_server.uid_for("alice@example.com"))
        whoami(app, token)
        cache = app.app.registry.cache
        reads = []
        original = cache.get
        cache.get = lambda key: reads.append(key) or original(key)
        whoami(app, token)
        assert not [k for k in reads if k.startswith("fxa-oauth.")]

    def test_batch_subrequests_verify_once(self, memory_app, fxa_server):
        app = memory_app(**{"fxa-oauth.local_cache_size": "0"})
        authenticator = app.app.registry.fxa_authenticator
        calls = []
        original = authenticator.authenticate
        authenticator.authenticate = lambda *a: calls.append(1) or original(*a)
        token = fxa_server.mint_jwt(fxa_server.uid_for("alice@example.com"))
        body = {"requests": [{"path": f"/buckets/default/collections/c{i}"} for i in range(3)]}
        app.post_json("/v1/batch", body, headers=auth(token))
        assert len(calls) == 1


class TestClients:
    @pytest.fixture
    def app(self, memory_app):
        return memory_app(
            **{
                "fxa-oauth.clients.notes.client_id": "notes-client",
                "fxa-oauth.clients.notes.required_scope": NOTES,
                "fxa-oauth.clients.lockbox.client_id": "lockbox-client",
                "fxa-oauth.clients.lockbox.required_scope": "lockbox",
            }
        )

    def test_client_token_gets_a_suffixed_user_id_and_the_fxa_principal(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        body = whoami(app, fxa_server.mint_jwt(uid, scope=NOTES, client_id="notes-client")).json
        assert body["user"]["id"] == f"fxa:{uid}-notes"
        assert f"fxa:{uid}" in body["user"]["principals"]

    def test_top_level_tokens_are_not_routed_next_to_named_clients(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        app.get("/v1/buckets", headers=auth(fxa_server.mint_jwt(uid)), status=401)

    def test_apps_are_isolated_but_can_share(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        notes = auth(fxa_server.mint_jwt(uid, scope=NOTES))
        lockbox = auth(fxa_server.mint_jwt(uid, scope="lockbox"))
        notes_bucket = app.get("/v1/", headers=notes).json["user"]["bucket"]
        lockbox_bucket = app.get("/v1/", headers=lockbox).json["user"]["bucket"]
        assert notes_bucket != lockbox_bucket
        app.put_json(
            "/v1/buckets/shared",
            {"permissions": {"read": [f"fxa:{uid}"]}},
            headers={"Authorization": "Basic Ym9iOnM="},
        )
        app.get("/v1/buckets/shared", headers=notes)

    def test_url_scope_semantics(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        # A parent URL scope implies its sub-paths...
        parent = fxa_server.mint_jwt(uid, scope="https://identity.mozilla.com/apps")
        assert whoami(app, parent).json["user"]["id"] == f"fxa:{uid}-notes"
        # ...but a provided fragment restricts it, and a look-alike path is another scope.
        for scope in (f"{NOTES}#read", f"{NOTES}-evil", "https://identity.mozilla.com/app"):
            token = fxa_server.mint_jwt(uid, scope=scope)
            app.get("/v1/buckets", headers=auth(token), status=401)

    def test_write_scope_semantics(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        assert whoami(app, fxa_server.mint_jwt(uid, scope="lockbox:write")).json["user"]["id"] == (
            f"fxa:{uid}-lockbox"
        )

    def test_token_matching_two_clients_is_refused(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        token = fxa_server.mint_jwt(uid, scope=f"lockbox {NOTES}")
        app.get("/v1/buckets", headers=auth(token), status=401)


class TestRevocation:
    def test_tokens_issued_before_the_cutoff_are_refused(self, memory_app, fxa_server):
        app = memory_app()
        uid = fxa_server.uid_for("alice@example.com")
        now = int(time.time())
        old = fxa_server.mint_jwt(uid, iat=now - 100)
        old_generation = fxa_server.mint_jwt(uid, generation=(now - 50) * 1000)
        whoami(app, old)  # Cached as valid...
        app.app.registry.fxa_revocations.record(uid, (now - 10) * 1000)
        app.get("/v1/buckets", headers=auth(old), status=401)  # ...yet refused now.
        app.get("/v1/buckets", headers=auth(old_generation), status=401)
        whoami(app, fxa_server.mint_jwt(uid, iat=now))
        whoami(app, fxa_server.mint_jwt(fxa_server.uid_for("bob@example.com"), iat=now - 100))

    def test_an_unreadable_cutoff_is_a_503_not_a_pass(self, make_app, fxa_server, backend):
        from kinto.core.storage.exceptions import BackendError

        app = make_app(kinto_settings(fxa_server.oauth_uri, **backend))
        revocations = app.app.registry.fxa_revocations
        storage = revocations._storage

        class FailingStorage:
            def get(self, **kwargs):
                raise BackendError(message="storage down")

        revocations._storage = FailingStorage()
        token = fxa_server.mint_jwt(fxa_server.uid_for("alice@example.com"))
        response = app.get("/v1/buckets", headers=auth(token), status=503)
        assert response.json["errno"] == 201
        assert "revocation" in response.json["message"]
        revocations._storage = storage
        app.get("/v1/buckets", headers=auth(token), status=200)


class TestIntegration:
    def test_capability(self, app):
        capability = app.get("/v1/").json["capabilities"]["fxa"]
        assert capability["url"]
        assert capability["version"]

    def test_openapi_shows_the_bearer_method(self, app):
        spec = app.get("/v1/__api__").json
        assert "fxa" in spec["securityDefinitions"]

    def test_heartbeat_true_when_fxa_answers(self, app):
        assert app.get("/v1/__heartbeat__").json["oauth"] is True

    @pytest.mark.parametrize("mode", ["down", "5xx", "slow"])
    def test_heartbeat_false_when_fxa_does_not(self, memory_app, fxa_server, mode):
        app = memory_app(**{"fxa-oauth.heartbeat_timeout_seconds": "0.3"})
        fxa_server.fail(mode, delay=1.0)
        resp = app.get("/v1/__heartbeat__", status=503)
        assert resp.json["oauth"] is False

    def test_heartbeat_null_without_oauth_uri(self, make_app):
        app = make_app(kinto_settings(None))
        assert app.get("/v1/__heartbeat__").json["oauth"] is None

    def test_policy_without_the_plugin_says_how_to_fix_it(self, make_app, fxa_server, caplog):
        app = make_app(kinto_settings(fxa_server.oauth_uri, includes=""))
        app.get("/v1/", headers=auth("token"), status=500)
        assert "add it to kinto.includes" in caplog.text

    def test_policy_remembers_nothing(self):
        from kinto_fxa.authentication import FxAOAuthAuthenticationPolicy

        assert FxAOAuthAuthenticationPolicy().remember(None, "user") == []

    def test_included_through_pyramid_includes_fails_clearly(self):
        from pyramid.config import Configurator

        config = Configurator(settings={})
        with pytest.raises(ConfigurationError, match=r"kinto\.includes"):
            config.include("kinto_fxa")


class TestVerificationMetrics:
    """Every authentication is counted once, with where its answer came from."""

    @pytest.fixture
    def recorded(self, make_app, fxa_server, backend):
        from kinto.core.metrics import IMetricsService

        from tests._events_helpers import RecordingMetrics

        app = make_app(kinto_settings(fxa_server.oauth_uri, **backend))
        recorder = RecordingMetrics()
        app.app.registry.registerUtility(recorder, IMetricsService)

        def counts():
            return [
                (c["outcome"], c["reason"], c["source"])
                for key, c in recorder.counts
                if key == "fxa_verifications"
            ]

        return app, counts

    def test_sources_and_outcomes(self, recorded, fxa_server, backend):
        app, counts = recorded
        uid = fxa_server.uid_for("alice@example.com")
        jwt = fxa_server.mint_jwt(uid)
        opaque = fxa_server.mint_opaque(uid)
        whoami(app, jwt)
        whoami(app, jwt)
        whoami(app, opaque)
        whoami(app, opaque)
        app.get("/v1/buckets", headers=auth(fxa_server.mint_jwt(uid, scope="other")), status=401)
        app.get("/v1/buckets", headers=auth("x" * 9000), status=401)
        assert counts() == [
            ("accepted", "none", "jwt"),
            ("accepted", "none", "local"),
            ("accepted", "none", "verify"),
            ("accepted", "none", "local"),
            ("refused", "scope", "jwt"),
            ("refused", "malformed", "local"),
        ]

    def test_subrequests_answered_by_their_parent(self, recorded, fxa_server):
        app, counts = recorded
        token = fxa_server.mint_jwt(fxa_server.uid_for("alice@example.com"))
        body = {"requests": [{"path": f"/buckets/default/collections/c{i}"} for i in range(2)]}
        app.post_json("/v1/batch", body, headers=auth(token))
        first, *others = counts()
        assert first == ("accepted", "none", "jwt")  # Verified once...
        # ...then each subrequest (batch, and the default bucket's own) answered by it.
        assert len(others) >= 2
        assert set(others) == {("accepted", "none", "memo")}

    def test_fxa_down_is_counted_unavailable(self, recorded, fxa_server):
        app, counts = recorded
        token = fxa_server.mint_opaque(fxa_server.uid_for("alice@example.com"))
        fxa_server.fail("down")
        app.get("/v1/buckets", headers=auth(token), status=503)
        assert counts() == [("unavailable", "none", "verify")]
