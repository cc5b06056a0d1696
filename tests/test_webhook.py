"""``POST /v1/fxa-oauth/events``: Security Event Tokens minted by the local FxA server."""

import time
from types import SimpleNamespace

import jwt
import pytest
from kinto.core.metrics import IMetricsService

from kinto_fxa import events
from kinto_fxa.testing.fxa_server import (
    DELETE_USER,
    PASSWORD_CHANGE,
    PROFILE_CHANGE,
    SUBSCRIPTION_STATE_CHANGE,
)
from kinto_fxa.views import webhook
from tests._events_helpers import (
    RecordingMetrics,
    Snapshot,
    assert_seeded_data_is_there,
    auth,
    events_settings,
    seed,
)


URL = "/v1/fxa-oauth/events"
ENABLED = {"fxa-oauth.webhook.enabled": "true"}


@pytest.fixture
def app(make_app, fxa_server, backend):
    return make_app(events_settings(fxa_server.oauth_uri, backend, **ENABLED))


@pytest.fixture
def memory_app(make_app, fxa_server):
    def factory(**extra):
        return make_app(events_settings(fxa_server.oauth_uri, {}, **{**ENABLED, **extra}))

    return factory


@pytest.fixture
def metrics(app):
    recorder = RecordingMetrics()
    app.app.registry.registerUtility(recorder, IMetricsService)
    return recorder


def post(app, token, status=200):
    return app.post(URL, headers=auth(token), status=status)


class TestDeleteUser:
    def test_deletes_exactly_the_users_data(self, app, fxa_server, metrics):
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)
        assert_seeded_data_is_there(before, seeded)

        resp = post(app, fxa_server.mint_set(seeded.alice, {DELETE_USER: {}}))

        assert resp.json == {"events": {"delete-user": "deleted"}}
        assert Snapshot.of(app.app.registry) == before.without_alice(seeded)
        labels = {"source": "webhook", "event": "delete-user", "outcome": "deleted"}
        assert (events.METRIC_EVENTS, labels) in metrics.counts
        timer_labels = {"source": "webhook", "event": "delete-user"}
        assert (events.METRIC_DURATION, timer_labels) in metrics.timers

    def test_a_repeated_event_succeeds_again(self, app, fxa_server):
        seeded = seed(app, fxa_server)
        token = fxa_server.mint_set(seeded.alice, {DELETE_USER: {}})
        post(app, token)
        after = Snapshot.of(app.app.registry)

        assert post(app, token).json == {"events": {"delete-user": "deleted"}}
        assert Snapshot.of(app.app.registry) == after

    def test_a_set_for_another_client_of_ours_deletes_everything(self, app, fxa_server):
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)
        post(app, fxa_server.mint_set(seeded.alice, {DELETE_USER: {}}, aud="notes-client"))
        assert Snapshot.of(app.app.registry) == before.without_alice(seeded)

    def test_a_handling_failure_answers_500_and_deletes_nothing(
        self, make_app, fxa_server, postgresql_url, monkeypatch
    ):
        from tests.conftest import backend_settings

        backend = backend_settings("postgresql", postgresql_url)
        app = make_app(events_settings(fxa_server.oauth_uri, backend, **ENABLED))
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)
        real_strip = events.accounts._strip_principals

        def fail_halfway(*args, **kwargs):
            real_strip(*args, **kwargs)
            raise RuntimeError("Database gone")

        monkeypatch.setattr(events.accounts, "_strip_principals", fail_halfway)

        resp = post(app, fxa_server.mint_set(seeded.alice, {DELETE_USER: {}}), status=500)

        assert resp.json["errno"] == 999  # The broker retries.
        assert Snapshot.of(app.app.registry) == before  # Rolled back.


class TestOtherEvents:
    def test_password_change_refuses_older_tokens(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        change = int(time.time() * 1000)
        old = auth(fxa_server.mint_jwt(uid, generation=change - 60_000))
        new = auth(fxa_server.mint_jwt(uid, generation=change))
        other = auth(fxa_server.mint_jwt(fxa_server.uid_for("bob@example.com")))
        for headers in (old, new, other):
            app.get("/v1/buckets", headers=headers, status=200)

        resp = post(app, fxa_server.mint_set(uid, {PASSWORD_CHANGE: {"changeTime": change}}))

        assert resp.json == {"events": {"password-change": "revoked"}}
        app.get("/v1/buckets", headers=old, status=401)
        app.get("/v1/buckets", headers=new, status=200)
        app.get("/v1/buckets", headers=other, status=200)

    def test_other_events_are_acknowledged(self, app, fxa_server):
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)
        payloads = {
            PROFILE_CHANGE: {"email": "alice@example.net"},
            SUBSCRIPTION_STATE_CHANGE: {"capabilities": [], "isActive": False, "changeTime": 1},
            "https://schemas.accounts.firefox.com/event/something-new": {},
        }

        resp = post(app, fxa_server.mint_set(seeded.alice, payloads))

        assert resp.json == {
            "events": {
                "profile-change": "ignored",
                "subscription-state-change": "ignored",
                "unknown": "ignored",
            }
        }
        assert Snapshot.of(app.app.registry) == before
        app.get("/v1/buckets", headers=seeded.alice_headers, status=200)


class TestRefused:
    @pytest.fixture
    def uid(self, fxa_server):
        return fxa_server.uid_for("alice@example.com")

    def assert_unauthorized(self, app, headers):
        before = Snapshot.of(app.app.registry)
        resp = app.post(URL, headers=headers, status=401)
        assert resp.json["code"] == 401
        assert resp.json["errno"] == 105
        assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert Snapshot.of(app.app.registry) == before
        return resp

    def test_a_forged_set(self, app, fxa_server, uid, metrics):
        seed(app, fxa_server)
        token = fxa_server.mint_set(uid, {DELETE_USER: {}}, signing_key=fxa_server.new_key())
        resp = self.assert_unauthorized(app, auth(token))
        assert "not signed by Firefox Accounts" in resp.json["message"]
        labels = {"source": "webhook", "event": "invalid", "outcome": "unauthorized"}
        assert (events.METRIC_EVENTS, labels) in metrics.counts

    def test_a_set_for_another_audience(self, app, fxa_server, uid):
        seed(app, fxa_server)
        token = fxa_server.mint_set(uid, {DELETE_USER: {}}, aud="someone-else")
        resp = self.assert_unauthorized(app, auth(token))
        assert "another client" in resp.json["message"]

    def test_a_set_from_another_issuer(self, app, fxa_server, uid):
        token = fxa_server.mint_set(uid, {DELETE_USER: {}}, iss="https://evil.example.com/")
        resp = self.assert_unauthorized(app, auth(token))
        assert "issuer" in resp.json["message"]

    def test_unusable_keys_are_skipped(self, fxa_server, uid):
        from kinto_fxa.settings import parse_settings

        settings = parse_settings({"fxa-oauth.client_id": "kinto-client"})
        good = fxa_server.jwks["keys"][0]
        keyset = SimpleNamespace(keys_for=lambda kid: [{"kid": "ec", "kty": "EC"}, good])
        token = fxa_server.mint_set(uid, {DELETE_USER: {}})
        assert webhook.verify_set(token, keyset, settings)["sub"] == uid

    def test_issuer_comparison(self):
        expected = "https://accounts.firefox.com/"
        for iss in ("https://accounts.firefox.com", "https://accounts.firefox.com/"):
            assert webhook._same_issuer(iss, expected)
            assert webhook._same_issuer(iss, expected.rstrip("/"))
        for iss in ("https://accounts.firefox.com//", "https://accounts.firefox.co", 42, None):
            assert not webhook._same_issuer(iss, expected)

    def test_an_access_token_is_not_an_event(self, app, fxa_server, uid):
        token = fxa_server.mint_jwt(uid, extra_claims={"events": {DELETE_USER: {}}})
        self.assert_unauthorized(app, auth(token))

    def test_an_unsigned_set(self, app, fxa_server, uid):
        claims = jwt.decode(
            fxa_server.mint_set(uid, {DELETE_USER: {}}), options={"verify_signature": False}
        )
        token = jwt.encode(claims, key=None, algorithm="none")
        self.assert_unauthorized(app, auth(token))

    def test_a_set_signed_with_the_public_key_as_hmac_secret(self, app, fxa_server, uid):
        public = fxa_server.jwks["keys"][0]
        token = jwt.encode(
            {"sub": uid, "events": {DELETE_USER: {}}},
            key=public["n"],
            algorithm="HS256",
            headers={"kid": public["kid"]},
        )
        self.assert_unauthorized(app, auth(token))

    def test_a_set_from_the_future(self, app, fxa_server, uid):
        token = fxa_server.mint_set(uid, {DELETE_USER: {}}, iat=int(time.time()) + 3600)
        resp = self.assert_unauthorized(app, auth(token))
        assert "Invalid Security Event Token" in resp.json["message"]

    def test_a_set_without_audience(self, app, fxa_server, uid):
        token = fxa_server.mint_set(uid, {DELETE_USER: {}}, aud=None)
        resp = self.assert_unauthorized(app, auth(token))
        assert "aud" in resp.json["message"]

    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic Ym9iOnM="}],
        ids=["none", "empty", "basic"],
    )
    def test_no_set(self, app, headers):
        resp = self.assert_unauthorized(app, headers)
        assert "Missing" in resp.json["message"]

    def test_not_a_jwt(self, app):
        self.assert_unauthorized(app, auth("not-a-jwt"))

    def test_an_unknown_key(self, app, fxa_server, uid):
        token = fxa_server.mint_set(uid, {DELETE_USER: {}})
        fxa_server.rotate_key(keep_old=False)  # FxA no longer publishes the token's key.
        self.assert_unauthorized(app, auth(token))


class TestInvalid:
    @pytest.mark.parametrize(
        "sub,events_claim",
        [
            ("not a uid!", {DELETE_USER: {}}),
            ("a" * 32, {}),
            ("a" * 32, {DELETE_USER: "payload"}),
            ("a" * 32, {PASSWORD_CHANGE: {}}),
            ("a" * 32, {PASSWORD_CHANGE: {"changeTime": "yesterday"}}),
        ],
        ids=["bad-sub", "no-events", "bad-payload", "no-change-time", "bad-change-time"],
    )
    def test_answers_400(self, app, fxa_server, sub, events_claim):
        resp = post(app, fxa_server.mint_set(sub, events_claim), status=400)
        assert resp.json["errno"] == 107
        assert resp.json["message"].startswith("Invalid Security Event Token")


class TestOneAccount:
    """Issue 8.3: a SET names exactly one FxA account, and is not replayable forever."""

    @pytest.mark.parametrize("suffix", ["-notes", "\n"], ids=["client-user-id", "newline"])
    def test_a_sub_naming_another_user_id_deletes_nothing(self, app, fxa_server, suffix):
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)
        token = fxa_server.mint_set(seeded.alice + suffix, {DELETE_USER: {}})
        resp = post(app, token, status=400)
        assert resp.json["errno"] == 107
        assert Snapshot.of(app.app.registry) == before
        notes = "/v1/buckets/default/collections/notes/records/n1"
        app.get(notes, headers=seeded.alice_notes_headers, status=200)

    def test_an_old_set_is_refused(self, app, fxa_server, metrics):
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)
        day_ago = int(time.time()) - webhook.MAX_AGE_SECONDS - webhook.LEEWAY_SECONDS - 60
        resp = post(app, fxa_server.mint_set(seeded.alice, {DELETE_USER: {}}, iat=day_ago), 401)
        assert "too old" in resp.json["message"]
        assert Snapshot.of(app.app.registry) == before
        labels = {"source": "webhook", "event": "invalid", "outcome": "unauthorized"}
        assert (events.METRIC_EVENTS, labels) in metrics.counts

    def test_a_recent_set_is_accepted(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        hours_ago = int(time.time()) - webhook.MAX_AGE_SECONDS + 3600
        post(app, fxa_server.mint_set(uid, {DELETE_USER: {}}, iat=hours_ago))

    @pytest.mark.parametrize("iat", [True, "1", float("nan"), None])
    def test_freshness_needs_a_number(self, iat):
        assert not webhook._fresh(iat, time.time())


class TestService:
    def test_fxa_unreachable_answers_503(self, app, fxa_server):
        token = fxa_server.mint_set(fxa_server.uid_for("alice@example.com"), {DELETE_USER: {}})
        fxa_server.fail("down")
        resp = post(app, token, status=503)
        assert resp.json["errno"] == 201
        assert resp.json["message"] == "Firefox Accounts keys are unavailable; retry later."

    def test_disabled_by_default(self, make_app, fxa_server):
        app = make_app(events_settings(fxa_server.oauth_uri, {}))
        uid = fxa_server.uid_for("alice@example.com")
        app.post(URL, headers=auth(fxa_server.mint_set(uid, {DELETE_USER: {}})), status=404)

    def test_listed_in_the_api_description(self, memory_app):
        paths = memory_app().get("/v1/__api__").json["paths"]
        assert "post" in paths["/fxa-oauth/events"]

    def test_does_not_need_kinto_authentication(self, memory_app, fxa_server):
        app = memory_app(**{"bucket_read_principals": "", "bucket_create_principals": ""})
        uid = fxa_server.uid_for("alice@example.com")
        post(app, fxa_server.mint_set(uid, {DELETE_USER: {}}))

    def test_the_issuer_is_configurable(self, memory_app, fxa_server):
        app = memory_app(**{"fxa-oauth.webhook.issuer": "https://accounts.stage.mozaws.net"})
        uid = fxa_server.uid_for("alice@example.com")
        good = fxa_server.mint_set(
            uid, {DELETE_USER: {}}, iss="https://accounts.stage.mozaws.net/"
        )
        post(app, good)
        post(app, fxa_server.mint_set(uid, {DELETE_USER: {}}), status=401)

    def test_a_list_audience(self, memory_app, fxa_server):
        app = memory_app()
        uid = fxa_server.uid_for("alice@example.com")
        for aud, status in ((["x", "kinto-client"], 200), (["x"], 401), (42, 401)):
            post(app, fxa_server.mint_set(uid, {DELETE_USER: {}}, aud=aud), status=status)
